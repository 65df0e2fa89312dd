"""Scripts that regenerate the paper's tables and figures on the machine at hand.

``python -m paper_figures`` (what ``make reproduce`` runs) writes everything to
``paper_figures/out/``. ``paper_numbers`` holds the paper's own numbers with their source markers.
"""
