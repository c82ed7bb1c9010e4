"""NASNet-A for CIFAR-sized images: arch specs, cells, towers and counting."""

from improve_nas.nasnet.arch import ArchSpec
from improve_nas.nasnet.counting import TowerCost, count_params, tower_cost
from improve_nas.nasnet.tower import NasnetTower

__all__ = ["ArchSpec", "NasnetTower", "TowerCost", "count_params",
           "tower_cost"]
