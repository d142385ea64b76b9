"""`tollgate reconcile`: Tollgate's counts of tokens beside the vendors' own, per day, key and
model; the usage on the organisation's keys that never passed Tollgate; the results kept."""
