"""Replica choice: prompt blocks (blocks.py) and the affinity policies over them (affinity.py).

Pure, like the other policies: Serve's request router (serve/replica_set.py) hands
them the replicas' queue lengths and the request's blocks and session key, and
applies the ranking they return.
"""
