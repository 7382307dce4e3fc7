"""One local Ray for the whole session: starting Ray costs seconds, a fit milliseconds."""

import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_session():
    import ray
    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, configure_logging=False,
                 object_store_memory=300 * 1024 * 1024, log_to_driver=False)
    yield ray
    ray.shutdown()
