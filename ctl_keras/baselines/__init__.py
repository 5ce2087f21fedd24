"""The paper's baselines (§5.1) behind one small interface, so they share data, backbone and questions.

Every baseline reads the same frozen-backbone feature cache as our model (`ctl_keras.feature_cache`), one
`SplitFeatures` per split. Train scenes are cropped or full depending on how the cache was built;
val/test scenes are always cropped, so every method is scored on the CTL task:

    method = registry.create("ibr", config)
    method.fit(train_features, val_features)         # no-op for the training-free ones
    result = method.score(test_features, questions)  # AUC + Top-K via evaluation.scoring

`encode_scenes` / `encode_products` / `distances` are the parts a subclass provides; the score of a
(scene, product) pair is always a distance (lower = more compatible). Modules: `base` (SplitFeatures,
the Baseline interface), `trained` (the learned baselines' fit: training.step's shared step, the
paper's batch size, validation every eval_every epochs and the best epoch kept, as for our model),
`registry` (by name), one module per method.
"""

