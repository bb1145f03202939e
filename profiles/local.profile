# The one-host test cluster of scripts/slurm-local.sh (or a laptop/workstation): Betzy's node shapes,
# partition rules and per-user limits. scripts/slurm-local.sh GENERATES the cluster from this file
# (nodes, partitions, QOS limits, submit checks), so the cluster refuses exactly what the wrappers'
# rule check refuses before sbatch. Format: see betzy.profile.
# Outputs default to the directory you submit from; temp goes to RAM, one directory per job.
bind out     $SLURM_SUBMIT_DIR/sure2-out                  /out     rw
bind tmp     /dev/shm/$USER/$SLURM_JOB_ID                 /tmp     rw
bind shards  $SLURM_SUBMIT_DIR/emb-shards                 /shards  ro
bind runs    $SLURM_SUBMIT_DIR/emb-runs                   /runs    rw
bind scenes  $SLURM_SUBMIT_DIR/season-scenes              /scenes  ro
bind season  $SLURM_SUBMIT_DIR/season                     /season  rw

# The test cluster's project account and the unprivileged user its jobs run as (local profile only).
cluster account         nn0000k
cluster user            hpcuser
cluster tmp_size        1536M

# Betzy's node shapes: Slurm counts hyperthreads (256 logical CPUs on 128 cores).
node normal   4 sockets=2 cores_per_socket=64 threads_per_core=2 memory_mb=249856
node accel    4 sockets=2 cores_per_socket=32 threads_per_core=2 memory_mb=506368 gpus=4
node preproc  1 sockets=2 cores_per_socket=64 threads_per_core=2 memory_mb=249856

rule normal  account        required
rule normal  time           required
rule normal  nodes          4-512
rule normal  mem            forbidden
rule normal  gpus           forbidden
rule normal  max_time       4-00:00:00
rule accel   account        required
rule accel   gpus           required
rule accel   gpus_per_task  forbidden
rule accel   gpus_per_node  4
rule accel   mem            allowed
rule accel   nodes          1-4
rule accel   max_nodes_per_user 3
rule accel   max_time       7-00:00:00
rule preproc account        required
rule preproc nodes          1-1
rule preproc mem            required
rule preproc gpus           forbidden
rule preproc max_running    16
rule preproc max_cpus_per_job 128
rule preproc max_cpus_per_user 256
rule preproc max_time       1-00:00:00
