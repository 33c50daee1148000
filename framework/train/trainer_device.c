// device.backend and parallel.transport: which backend this rank computes on and which transport
// carries the executor's tensors.
#include <omp.h>
#include <string.h>

#include "build_config.h"

#include "framework/runtime/failure.h"
#include "framework/train/trainer_internal.h"
#include "kernels/cpu/cpu_backend.h"
#if YP_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_device.h"
#endif
#if YP_HAVE_NCCL
#include "framework/runtime/transport_nccl.h"
#endif

int trainer_gpu_count(void) {
#if YP_HAVE_CUDA
    return cuda_device_count();
#else
    return 0;
#endif
}

const char *trainer_no_gpu_reason(void) {
    return YP_HAVE_CUDA ? "this machine has no usable CUDA device"
                        : "this yolopipe was built without CUDA (no CUDA toolkit was found)";
}

#if YP_HAVE_CUDA
// parallel.transport for a GPU backend under a launcher: NCCL carries the executor's GPU tensors when
// every rank of the node has a GPU of its own (NCCL refuses two ranks on one GPU); otherwise the
// executor goes through host staging over MPI (trainer_build_model). The trainer's own host-memory
// collectives stay on MPI either way.
static bool trainer_open_gpu_transport(Trainer *t, int gpus, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    ConfigTransport want = cfg->parallel.transport;
    bool launched = t->tr->ops->kind == TRANSPORT_KIND_MPI;
    char why[256] = "this yolopipe was built without NCCL";
    bool possible = false;
#if YP_HAVE_NCCL
    if (!launched) snprintf(why, sizeof why, "there is one process (no launcher) and so nothing to transfer");
    else possible = transport_nccl_possible(t->topo->local_size, gpus, why, sizeof why);
#else
    (void)gpus;
#endif
    if (want == CONFIG_TRANSPORT_NCCL && !possible)
        return config_error_at(cfg, "parallel.transport", err, "parallel.transport: nccl, but %s", why);
    if (want == CONFIG_TRANSPORT_MPI || !launched) return true;
    if (!possible) {
        fprintf(t->out, "note: GPU tensors go between ranks over MPI through host memory: %s\n", why);
        return true;
    }
#if YP_HAVE_NCCL
    t->be_tr = transport_nccl_create(t->tr, cuda_backend_stream(t->be));
    t->be_tr->timeout_s = t->tr->timeout_s;
    failure_install(&t->be_tr->topo, t->be_tr);  // an internal error then aborts the NCCL communicators too
#endif
    return true;
}
#endif

// device.backend: auto takes a GPU when there is one. Ranks on one node take GPUs round-robin by
// local rank; several ranks on one GPU work, each with its own stream, but share its time.
bool trainer_open_backend(Trainer *t, Error *err) {
    const ExperimentConfig *cfg = t->cfg;
    int gpus = trainer_gpu_count();
    bool cuda = cfg->device.backend == CONFIG_BACKEND_CUDA || (cfg->device.backend == CONFIG_BACKEND_AUTO && gpus > 0);
    if (cuda && gpus == 0)
        return config_error_at(cfg, "device.backend", err, "device.backend: cuda, but %s", trainer_no_gpu_reason());
    ConfigPrecision precision = cfg->device.precision;
    if (precision == CONFIG_PRECISION_TF32 && !cuda)
        return config_error_at(cfg, "device.precision", err, "device.precision: tf32 needs the CUDA backend");
    DType act = config_precision_activation_type(precision);
    if (!cuda) {
        if (cfg->parallel.transport == CONFIG_TRANSPORT_NCCL)
            return config_error_at(cfg, "parallel.transport", err, "parallel.transport: nccl needs the CUDA backend");
        fprintf(t->out, "device: cpu (%d threads per rank), %s\n", omp_get_max_threads(), dtype_name(act));
        if (act != DTYPE_F32)
            fprintf(t->out,
                    "note: device.precision %s on the CPU stores activations in %s but computes in fp32 (slower than "
                    "fp32; it checks mixed precision where there is no GPU)\n",
                    dtype_name(act), dtype_name(act));
        t->be = cpu_backend_create(act);
        return true;
    }
#if YP_HAVE_CUDA
    const Topology *topo = t->topo;
    int device = topo->local_rank % gpus;
    CudaBackendOptions co = {.device = device, .allow_tf32 = precision == CONFIG_PRECISION_TF32, .act = act,
                             .deterministic = cfg->device.deterministic};
    t->be = cuda_backend_create(&co);
    char name[256];
    cuda_device_name(device, name, sizeof name);
    fprintf(t->out, "device: cuda:%d (%s), %s%s\n", device, name, config_precision_names[precision],
            cfg->device.deterministic ? "" : ", fastest cuDNN algorithms (device.deterministic: false)");
    if (topo->local_size > gpus)
        fprintf(t->out, "note: %d ranks per node share %d GPU%s (they take turns on it)\n", topo->local_size, gpus,
                gpus > 1 ? "s" : "");
    return trainer_open_gpu_transport(t, gpus, err);
#else
    return true;
#endif
}
