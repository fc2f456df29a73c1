"""The search loop, selection policy, scheduler, CLI and HTTP service: the only package that knows
about studies."""
