"""Fault drills: drive a router into one fault scenario and measure how it ends.

Real processes, real kills. Each drill runs its requests through
`shardline.outcomes` (one verdict per request, so LOST and CORRUPT are counted the
same way everywhere) and returns the tally plus the figure the scenario is about.
The router tests run them over fake replicas, tests/integration/test_faults_*.py
over real vLLM at small sizes, and bench/faults.py at large ones.

    replica_kill  SIGKILL one of two replicas under load: retries and resumed
                  streams on the survivor, time to replacement (replica_kill.py)
    overload      open-loop arrivals at a multiple of capacity: fast RESOURCE_EXHAUSTED
                  for the excess, bounded latency for the rest (overload.py)
    cancel_storm  cancel part of many streams at random token offsets: in-flight
                  and engine counts return to zero (cancel_storm.py)
    deadlines     client deadlines and the spec's default cap stop engine work
                  (deadlines.py)
    engine_death, stuck_replica, all_engines_dead
                  SIGKILL / SIGSTOP a replica's vLLM engine core: fail-over, health,
                  replacement (replica_health.py)
    drain         `shardline down` / SIGTERM with live streams: NOT_SERVING first,
                  streams finish, new calls UNAVAILABLE fast (drain.py)
    rolling_update  re-deploy under load, with and without client retries
                  (rolling_update.py)
    autoscale     from zero, load rising to more replicas and falling back: held
                  first request, scale-up and scale-down times, drained streams
                  (autoscale.py)
"""
