"""`python -m timm_recipes ...` (also the entry point for `torchrun -m timm_recipes train ...`)."""

from timm_recipes.cli import main

raise SystemExit(main())
