"""int8, in one place: the recipe search every quantising target runs (`search`: goals, the
leave-images-out folds, the recipe order, the one bisection), and the torch-side ranking and search
of the targets that quantise a torch model (`torch_side`: ExecuTorch, CoreML). A target supplies how
to build, run and rank a recipe; which recipe is tried next, and which is chosen, is decided here.

Imports nothing heavy: the target table imports it.
"""
