"""The experiments whose numbers the docs quote (segmentation recipes, cross-dataset, stress test,
prompting), run from the repository root as `python -m experiments.<name>` or
`bash experiments/seg_recipes.sh`."""
