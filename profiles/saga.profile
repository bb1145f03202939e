# Saga (Sigma2/NRIS): container binds and partition rules. Format: see betzy.profile.
# Saga has node-local disk ($LOCALSCRATCH, when the job asks for --gres=localscratch:SIZE); RAM is
# the default here because it needs no extra request. Every job must say how much memory it needs.
bind out     /cluster/work/users/$USER/sure2/out          /out     rw
bind tmp     /dev/shm/$USER/$SLURM_JOB_ID                 /tmp     rw
bind shards  /cluster/work/users/$USER/emb/shards         /shards  ro
bind runs    /cluster/work/users/$USER/emb/runs           /runs    rw
bind scenes  /cluster/work/users/$USER/sure2/scenes       /scenes  ro
bind season  /cluster/work/users/$USER/sure2/season       /season  rw

# normal: shared nodes (40 cores, ~178 GiB usable), memory must be given (--mem-per-cpu).
rule normal  account        required
rule normal  nodes          1-256
rule normal  mem            required
rule normal  gpus           forbidden
rule normal  max_time       7-00:00:00
# accel: 4 P100 or A100 per node; memory must be given; GPUs per job or per node.
rule accel   account        required
rule accel   gpus           required
rule accel   gpus_per_task  forbidden
rule accel   gpus_per_node  4
rule accel   mem            required
rule accel   max_time       14-00:00:00
