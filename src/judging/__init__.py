"""Judging what was measured: imbalance over a window, the diagnosis rules and their
evidence, why each phenomenon happens (from the mechanism read), the analyser that
annotates each snapshot with them."""
