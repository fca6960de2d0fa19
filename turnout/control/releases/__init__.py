"""Progressive delivery: the Release state machine (``state``, ``machine``), its
statistics (``stats``, ``tracker``), the reconciler that runs it on the leader
(``reconciler``) and the commands humans and runbooks send it (``commands``)."""
