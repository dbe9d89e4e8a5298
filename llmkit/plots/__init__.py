"""Pictures drawn with matplotlib (Agg, no display): training curves and confusion matrices.

Importing this package imports nothing heavy; matplotlib loads when a picture is drawn, and its
absence is one line naming the extra to install (`pip install 'llmkit[plot]'`).
"""
