"""An offline safety suite: ASTRAL's grid of unsafe requests, answered, judged, reviewed, reported.

One module per job: ``taxonomy`` (the 14 categories, 6 styles, 5 techniques, and the tables that
place public seed sets on them), ``seeds`` (pinned wheels -> labelled seeds and judge sets),
``styles`` (style transforms and persuasion frames), ``suite`` (the grid, ASTRAL import),
``runner`` (answers with the chat's batch responder, resumable), ``judges`` (refusal,
offensive language, engagement, the verdict rule), ``rm_judge`` (the reward model's score),
``metrics`` (Wilson, McNemar, agreement), ``review`` (the SSA app's safety task), ``report``
and ``__main__`` (the command line).
"""
