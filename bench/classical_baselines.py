"""Classical models on the demo's split of the embedded digits.

    .venv/bin/python bench/classical_baselines.py

The simplest things a user could do instead of a search: scikit-learn's
logistic regression, an RBF SVC and 3-nearest-neighbours, trained on the
same 1,437 training digits (the dataset builder's own split, read through
TFDS) and scored on the same 360 test digits. Prints one JSON object: each
model's test accuracy and fit+predict seconds.
"""

import json
import time

import numpy as np
import tensorflow_datasets as tfds
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC

from improve_nas.data import datasets


def _split(builder, name):
  ds = tfds.as_numpy(builder.as_dataset(split=name, batch_size=-1))
  images = ds["image"].reshape(len(ds["label"]), -1).astype(np.float32)
  return images / 255.0, ds["label"]


def main():
  tfds.disable_progress_bar()
  source = datasets.load_source("sklearn_digits")
  builder = source.builder
  x_train, y_train = _split(builder, "train")
  x_test, y_test = _split(builder, "test")
  models = {
      "logistic_regression": LogisticRegression(max_iter=2000),
      "rbf_svc": SVC(),
      "knn_3": KNeighborsClassifier(n_neighbors=3),
  }
  out = {"train_examples": len(y_train), "test_examples": len(y_test)}
  for name, model in models.items():
    start = time.time()
    model.fit(x_train, y_train)
    accuracy = float(np.mean(model.predict(x_test) == y_test))
    out[name] = {"test_accuracy": round(accuracy, 4),
                 "seconds": round(time.time() - start, 3)}
  print(json.dumps(out))


if __name__ == "__main__":
  main()
