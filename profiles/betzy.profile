# Betzy (Sigma2/NRIS): the cluster profile — container binds, partition rules, node shapes, facts to
# confirm. Read by slurm/common.sh (bash, no venv), the one reader. Format: whitespace-separated
# fields, '#' starts a comment.
#
#   bind NAME HOST_PATH CONTAINER_PATH MODE
#       HOST_PATH may use $VAR or ${VAR} ($USER, $SLURM_JOB_ID, ...); an unset variable is an error.
#       The environment variable BIND_<NAME> (upper case), when set, replaces HOST_PATH: that is how a
#       user points a bind elsewhere (its value may hold spaces or quotes, but not ':' or ',').
#   rule PARTITION KEY VALUE
#       account required | time required | nodes MIN-MAX | mem forbidden|allowed|required |
#       gpus required|forbidden | gpus_per_task forbidden | gpus_per_node MAX | max_time D-HH:MM:SS |
#       max_running N | max_nodes_per_user N | max_cpus_per_job N | max_cpus_per_user N
#   node PARTITION COUNT sockets=S cores_per_socket=C threads_per_core=T memory_mb=M [gpus=G]
#       the partition's nodes as Slurm describes them (T=2: Slurm counts hyperthreads as CPUs)
#   cluster KEY VALUE
#       facts about the cluster that the documentation does not settle; each with a one-line check
#       (local profile: the test cluster's account, user and /tmp size)
#
# The rule check (bash slurm/common.sh check WRAPPER ...) refuses what these rules refuse, before
# sbatch; scripts/slurm-local.sh builds the local test cluster from local.profile's node/rule/cluster lines.
#
# /cluster is Lustre: outputs, shards and checkpoints live there; temp files never do. Betzy has no
# node-local scratch, so temp goes to RAM (/dev/shm), one directory per job. $USERWORK
# (/cluster/work/users/$USER) is purged after 21 days: copy results you keep to project space.
bind out     /cluster/work/users/$USER/sure2/out          /out     rw
bind tmp     /dev/shm/$USER/$SLURM_JOB_ID                 /tmp     rw
bind shards  /cluster/work/users/$USER/emb/shards         /shards  ro
bind runs    /cluster/work/users/$USER/emb/runs           /runs    rw
bind scenes  /cluster/work/users/$USER/sure2/scenes       /scenes  ro
bind season  /cluster/work/users/$USER/sure2/season       /season  rw

# Not confirmed from NRIS's documentation; check on the cluster and correct here:
#   slurm_version:   sinfo --version
#   cpus_per_node:   scontrol show node b1234 | grep -o 'CPUTot=[0-9]*'   (256: hyperthreads counted)
#   accel_driver:    srun -p accel -A PROJECT -t 5 --gpus=1 nvidia-smi --query-gpu=driver_version --format=csv
#   cluster_lock:    srun -A PROJECT -t 5 -N4 -p normal grep ' /cluster ' /proc/mounts   (flock or localflock)
cluster slurm_version   23.02
cluster cpus_per_node   256
cluster accel_driver    unknown
cluster cluster_lock    unknown
# Interconnect: InfiniBand HDR (Mellanox): NCCL over verbs on the mlx5 HCAs, bootstrap over IPoIB.
# Check: srun -p accel -A PROJECT -t 5 --gpus=1 ls /sys/class/infiniband /sys/class/net
cluster nccl_ib_hca      mlx5
cluster nccl_socket_ifname ib0

# normal: whole nodes (128 cores = 256 hyperthreads, 244 GiB usable), 4-512 nodes, memory is not requested.
node normal  1344 sockets=2 cores_per_socket=64 threads_per_core=2 memory_mb=249856
rule normal  account        required
rule normal  time           required
rule normal  nodes          4-512
rule normal  mem            forbidden
rule normal  gpus           forbidden
rule normal  max_time       4-00:00:00
# accel: 4 nodes x 4 A100 40 GB, 64 cores, 494.5 GiB; GPUs per job or per node, not per task; at most
# 3 nodes per user.
node accel   4 sockets=2 cores_per_socket=32 threads_per_core=2 memory_mb=506368 gpus=4
rule accel   account        required
rule accel   gpus           required
rule accel   gpus_per_task  forbidden
rule accel   gpus_per_node  4
rule accel   mem            allowed
rule accel   nodes          1-4
rule accel   max_nodes_per_user 3
rule accel   max_time       7-00:00:00
# preproc: one node per job, --mem-per-cpu required, at most 16 running jobs and 256 billing units
# (cores) per user, 128 per job.
rule preproc account        required
rule preproc nodes          1-1
rule preproc mem            required
rule preproc gpus           forbidden
rule preproc max_running    16
rule preproc max_cpus_per_job 128
rule preproc max_cpus_per_user 256
rule preproc max_time       1-00:00:00
