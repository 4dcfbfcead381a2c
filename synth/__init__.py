"""Synthetic data generation (planned: a phi/Cosmopedia-style textbook generator on vLLM).

No stages yet. Stages added here are discovered like every other stage (see
``curate.pipelines.registry``); GPU stages declare ``resources = Resources(gpus=1)`` and
``stateful = True`` so the Ray adapter runs them in an actor pool on GPU nodes.
"""
