"""Result records, statistics, LaTeX tables, figures and the carbon account."""
