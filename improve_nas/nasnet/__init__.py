"""NASNet-A for CIFAR-sized images: arch specs (arch), the cells' ops
(ops, cells), the tower (tower) and counting (counting). Import the module
you need; importing the package loads nothing."""
