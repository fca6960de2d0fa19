"""Alert-driven remediation: alerts in, runbook runs out, leased data-plane mitigations.

- ``alertmanager``: the Alertmanager webhook (version 4) payload → alert records (delivery
  key, stale refusal);
- ``matching`` / ``plan``: which Runbooks an alert starts, the run each one plans;
- ``actions`` (the registry) and ``builtin_actions`` (shed, block, notify);
- ``breaker``: the circuit breaker every outbound call goes through;
- ``engine``: the leader's reconciler that executes runs step by step, durably;
- ``expiry``: the reconciler that deletes Mitigations whose lease ran out (auto-revert).
"""
