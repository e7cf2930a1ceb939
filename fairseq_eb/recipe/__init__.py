"""The table recipe: train baseline / RR / GP / RR+GP for N seeds, decode at beams 1-3, score, aggregate.

Entry point: ``python -m fairseq_eb.recipe.table --help``. Named model/training configurations live in
:mod:`fairseq_eb.recipe.configs`; the per-method fairseq options in :mod:`fairseq_eb.recipe.methods`.
"""
