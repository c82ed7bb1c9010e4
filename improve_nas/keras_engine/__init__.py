"""The Keras 3 engine: the AdaNAS search of the adanet engine on TensorFlow
2.21 and Keras 3 (Python 3.12 and 3.13), without tf.estimator or adanet.

It reuses the algorithm layer: the config and its validation, the NASNet-A
tower, the generators and the budget, knowledge distillation, the learning
rate schedule, the input pipeline, the records and the report. What differs
is how an iteration runs. Members live in memory from one iteration to the
next, so nothing is rebuilt at a boundary. Frozen members only run forward,
in inference mode, inside the candidates' training step. One
tf.train.Checkpoint holds the whole state.

    from improve_nas.keras_engine import search
    result = search.run_search(config, model_dir, export=True)

or `improve-nas --engine=keras` with the same flags.
"""

ENGINE = "keras"
