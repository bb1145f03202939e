# Olivia (NRIS's newest system, HPE Cray EX, Slingshot): CPU partition only, on paper (not yet tried on
# the cluster). Format: see betzy.profile. Unlike Betzy, normal jobs SHARE nodes and must give
# --mem-per-cpu; nodes have local SSDs. Its GPU nodes (4 x GH200, aarch64 Neoverse V2) need an aarch64
# train.sif and the host's libfabric + aws-ofi-nccl bound in: see the README ("Next cluster: Olivia").
# Paths follow NRIS's usual layout; confirm them (and the settings below) on the cluster:
#   cpus_per_node:  scontrol show node <node> | grep -o 'CPUTot=[0-9]*'
#   cluster_lock:   srun -A PROJECT -t 5 grep ' /cluster ' /proc/mounts
bind out     /cluster/work/users/$USER/sure2/out          /out     rw
bind tmp     /dev/shm/$USER/$SLURM_JOB_ID                 /tmp     rw
bind shards  /cluster/work/users/$USER/emb/shards         /shards  ro
bind runs    /cluster/work/users/$USER/emb/runs           /runs    rw
bind scenes  /cluster/work/users/$USER/sure2/scenes       /scenes  ro
bind season  /cluster/work/users/$USER/sure2/season       /season  rw

cluster cpus_per_node   256
cluster cluster_lock    unknown

# normal: 252 nodes, 2 x 128-core Zen5c, 768 GiB; shared between jobs, memory per CPU required.
node normal  252 sockets=2 cores_per_socket=128 threads_per_core=1 memory_mb=786432
rule normal  account        required
rule normal  time           required
rule normal  mem            required
rule normal  gpus           forbidden
rule normal  max_time       7-00:00:00
