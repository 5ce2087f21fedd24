"""One finished feature-cache training run shared by the training tests (it also builds the cache)."""

import pytest

EPOCHS = 3


@pytest.fixture(scope="session")
def feature_run(synthetic_data, tmp_path_factory):
    """(config, data_dir, model_dir, results) of a 3-epoch smoke run with --feature_cache.

    The feature cache lands under <data_dir>/feature_cache/, where later subprocess runs find it.
    """
    from ctl_keras.training import loop

    config, data_dir = synthetic_data
    config = config.replace(epochs=EPOCHS)
    model_dir = str(tmp_path_factory.mktemp("feature_run"))
    options = loop.RunOptions(data_dir=data_dir, model_dir=model_dir, feature_cache=True)
    results = loop.train(config, options)
    return config, data_dir, model_dir, results
