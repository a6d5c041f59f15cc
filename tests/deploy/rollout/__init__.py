"""``make deploy-check``: a rolling update behind a real load balancer loses nothing (``python -m
tests.deploy.rollout``). See docs/deploy.md, "What a rollout does", for the Deployment-to-harness mapping."""
