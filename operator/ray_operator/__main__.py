"""`python -m ray_operator`: the `ray-operator` command."""

from ray_operator.cli import main

main()
