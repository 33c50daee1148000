#include "framework/runtime/executor.h"

#include <stdlib.h>
#include <string.h>

#include "framework/core/clock.h"
#include "framework/runtime/failure.h"
#include "layers/loss.h"
#include "schedule/simulate.h"

enum { EXECUTOR_SIDE_STEP = 32, EXECUTOR_MAX_SIDES = 8192 / EXECUTOR_SIDE_STEP + 1 };

// What a message carries, the lowest digit of its tag in base MESSAGE_KIND_COUNT (message_tag):
//   tag = (micro * (n_cuts + 1) + cut) * MESSAGE_KIND_COUNT + kind
// with cut in [0, n_cuts) and micro in [0, micro_batches) (0 in validation); the stride n_cuts + 1
// leaves one cut index per micro-batch unused. Tags stay below micro_batches * (n_cuts + 1) *
// MESSAGE_KIND_COUNT, which executor_create checks against the transport's largest tag.
typedef enum MessageKind { MESSAGE_ACTIVATION, MESSAGE_GRADIENT, MESSAGE_VALIDATION, MESSAGE_KIND_COUNT } MessageKind;

// A pooled message buffer: sends copy into one, validation receives land in one.
typedef struct MessageBuffer {
    float *data;               // backend memory
    size_t capacity;           // bytes
    TransportRequest *pending; // NULL when free
    int peer, cut;             // of the send in flight, for the message of a wait for it
} MessageBuffer;

struct Executor {
    ExecutorOptions opt;
    const PipelinePlan *plan;
    const SchedProgram *program;
    Transport *tr;
    Backend *be;
    Topology topo;
    bool classify;
    int64_t micro;  // images per micro-batch
    int n_chunks;
    ExecutorChunk *chunks;

    // Per instruction of the program.
    float **recv_data;              // receives: their own buffers (backend memory), posted at batch start
    TransportRequest **recv_pending;
    int *last_use;                  // index of the last instruction touching (chunk, micro) of this one, or -1
    int *final_weight_pass;         // 1 for a chunk's last BWD/BWD_WEIGHT of the batch
    SchedSpan *spans;               // measured in the last recorded batch, relative to its start
    int next_recv;                  // receives before this instruction index are complete
    // Each layer's measured compute over the run (micro-batch passes at train.imgsz after the first
    // batch), for executor_profile_write.
    double *layer_fwd_s, *layer_bwd_s, *layer_passes;
    bool measuring;                 // the batch in progress is measured
    int64_t batches_run;

    int n_sends;
    MessageBuffer *sends;

    // Last stage: the loss. Classification's on the host (downloading the output); detection's on
    // the backend, where the output lies (its detect_loss_* slots), one loss per input side.
    float *host_out, *host_dout;    // classification: (micro x nc); NULL otherwise
    TargetBox *mb_targets;          // (mb_targets_cap) one micro-batch's targets
    int64_t mb_targets_cap;
    BackendDetectLoss *losses[EXECUTOR_MAX_SIDES];  // by side / EXECUTOR_SIDE_STEP; NULL until used
    bool recorded;
    double batch_s;                 // duration of the recorded batch
    ExecutorStats stats;            // the training batches' traffic and activations (batches: batches_run)
};

static int64_t cut_elems(const Executor *ex, int cut);

// ---- set-up ------------------------------------------------------------------------------------------

static int chunk_of_stage(const Executor *ex, int stage) {
    for (int c = 0; c < ex->n_chunks; c++)
        if (ex->chunks[c].stage == stage) return c;
    yp_fatal("stage %d is not on pipeline rank %d", stage, ex->topo.pipeline_rank);
}

// Which instruction last touches each (chunk, micro-batch), and the slots each chunk needs: the most
// micro-batches live at once between their first and last instruction.
static void executor_analyse_program(Executor *ex) {
    const SchedProgram *p = ex->program;
    int m = ex->plan->micro_batches;
    int *last = yp_malloc((size_t)(ex->n_chunks * m) * sizeof *last);
    int *first = yp_malloc((size_t)(ex->n_chunks * m) * sizeof *first);
    int *last_weight = yp_malloc((size_t)ex->n_chunks * sizeof *last_weight);
    for (int k = 0; k < ex->n_chunks * m; k++) last[k] = first[k] = -1;
    for (int c = 0; c < ex->n_chunks; c++) last_weight[c] = -1;
    ex->last_use = yp_malloc((size_t)p->n_instrs * sizeof *ex->last_use);
    ex->final_weight_pass = yp_calloc((size_t)p->n_instrs, sizeof *ex->final_weight_pass);
    for (int i = 0; i < p->n_instrs; i++) {
        const SchedInstr *in = &p->instrs[i];
        ex->last_use[i] = -1;
        bool touches = in->op == SCHED_OP_RECV_ACT || in->op == SCHED_OP_FWD || in->op == SCHED_OP_SEND_ACT ||
                       in->op == SCHED_OP_BWD || in->op == SCHED_OP_BWD_INPUT || in->op == SCHED_OP_BWD_WEIGHT ||
                       in->op == SCHED_OP_SEND_GRAD || (in->op == SCHED_OP_LOAD && in->stage == 0);
        if (!touches) continue;
        int k = chunk_of_stage(ex, in->stage) * m + in->micro;
        if (first[k] < 0) first[k] = i;
        last[k] = i;
        if (in->op == SCHED_OP_BWD || in->op == SCHED_OP_BWD_WEIGHT) last_weight[chunk_of_stage(ex, in->stage)] = i;
    }
    for (int c = 0; c < ex->n_chunks; c++) {
        if (last_weight[c] >= 0) ex->final_weight_pass[last_weight[c]] = 1;
        int most = 0;
        for (int i = 0; i < p->n_instrs; i++) {
            int live = 0;
            for (int mb = 0; mb < m; mb++) live += first[c * m + mb] <= i && i <= last[c * m + mb];
            if (live > most) most = live;
        }
        ex->chunks[c].n_slots = most > 0 ? most : 1;
    }
    for (int k = 0; k < ex->n_chunks * m; k++)
        if (last[k] >= 0) ex->last_use[last[k]] = k;
    free(first);
    free(last);
    free(last_weight);
}

static bool executor_build_chunk(Executor *ex, ExecutorChunk *c, Error *err) {
    const PlanStage *st = &ex->plan->stages[c->stage];
    c->layer_begin = st->first_layer;
    c->layer_end = st->last_layer + 1;
    bool split = ex->opt.cfg->parallel.schedule == SCHED_KIND_ZB_H1;
    GraphOptions go = {.batch = ex->micro, .imgsz_h = ex->opt.max_side, .imgsz_w = ex->opt.max_side, .be = ex->be,
                       .seed = (uint64_t)ex->opt.cfg->train.seed, .layer_begin = c->layer_begin,
                       .layer_end = c->layer_end, .split_backward = split};
    c->slots = yp_calloc((size_t)c->n_slots, sizeof *c->slots);
    c->slot_micro = yp_malloc((size_t)c->n_slots * sizeof *c->slot_micro);
    for (int s = 0; s < c->n_slots; s++) {
        c->slot_micro[s] = -1;
        if (s > 0) go.share_weights = c->slots[0];
        if (!graph_create(ex->opt.spec, &go, &c->slots[s], err)) return false;
    }
    c->graph = c->slots[0];
    // Saved activations per slot as the planner counts them (ExecutorStats): the range's own and the
    // cut tensors received, whose out the external producers hold.
    int64_t kept = c->graph->activation_elems;
    for (int l = 0; l < c->layer_begin; l++)
        if (graph_layer_has_memory(c->graph, l)) kept += shape_elems(c->graph->layers[l].out_shape);
    c->slot_activation_bytes = (int64_t)backend_act_bytes(ex->be, kept);
    // Parameters are declared layer by layer, so each layer's gradients are one contiguous range.
    int n = c->layer_end - c->layer_begin;
    c->layer_param_offset = yp_malloc((size_t)(n + 1) * sizeof *c->layer_param_offset);
    const Graph *g = c->graph;
    for (int l = n; l >= 0; l--) {
        c->layer_param_offset[l] = l == n ? g->param_elems : c->layer_param_offset[l + 1];
        for (int p = 0; p < g->n_params; p++)
            if (g->params[p].layer == c->layer_begin + l && !(g->params[p].flags & PARAM_BUFFER) &&
                g->params[p].offset < c->layer_param_offset[l])
                c->layer_param_offset[l] = g->params[p].offset;
    }
    return true;
}

bool executor_create(const ExecutorOptions *opt, Executor **out, Error *err) {
    Executor *ex = yp_calloc(1, sizeof *ex);
    *out = ex;
    ex->opt = *opt;
    ex->plan = &opt->ep->plan;
    ex->tr = opt->transport;
    ex->be = opt->be;
    ex->topo = opt->transport->topo;
    ex->classify = opt->cfg->task == CONFIG_TASK_CLASSIFY;
    ex->micro = ex->plan->micro_batch_images;
    ex->program = &opt->ep->schedule->programs[ex->topo.pipeline_rank];
    ex->n_chunks = ex->plan->chunks;
    ex->chunks = yp_calloc((size_t)ex->n_chunks, sizeof *ex->chunks);
    for (int c = 0; c < ex->n_chunks; c++) ex->chunks[c].stage = c * ex->plan->n_ranks + ex->topo.pipeline_rank;
    executor_analyse_program(ex);
    for (int c = 0; c < ex->n_chunks; c++)
        if (!executor_build_chunk(ex, &ex->chunks[c], err)) return false;
    int n = ex->program->n_instrs;
    ex->recv_data = yp_calloc((size_t)n, sizeof *ex->recv_data);
    // Receive buffers for the largest input (the graphs are still at their built size).
    for (int i = 0; i < n; i++) {
        const SchedInstr *in = &ex->program->instrs[i];
        if (in->op == SCHED_OP_RECV_ACT || in->op == SCHED_OP_RECV_GRAD)
            ex->recv_data[i] = ex->be->ops->alloc(ex->be, backend_act_bytes(ex->be, cut_elems(ex, in->cut)));
    }
    ex->recv_pending = yp_calloc((size_t)n, sizeof *ex->recv_pending);
    ex->spans = yp_calloc((size_t)n, sizeof *ex->spans);
    int n_layers = opt->spec->n_rows;
    ex->layer_fwd_s = yp_calloc((size_t)n_layers, sizeof *ex->layer_fwd_s);
    ex->layer_bwd_s = yp_calloc((size_t)n_layers, sizeof *ex->layer_bwd_s);
    ex->layer_passes = yp_calloc((size_t)n_layers, sizeof *ex->layer_passes);
    int64_t tags = (int64_t)ex->plan->micro_batches * (ex->plan->n_cuts + 1) * MESSAGE_KIND_COUNT;
    if (tags > transport_max_tag(ex->tr))
        return error_set(err, "%d micro-batches x %d cut tensors need message tags up to %lld, but the transport "
                              "allows %d: use fewer parallel.micro_batches",
                         ex->plan->micro_batches, ex->plan->n_cuts, (long long)tags, transport_max_tag(ex->tr));
    if (executor_loads_targets(ex) && ex->classify) {
        int64_t elems = executor_output_elems(ex, ex->opt.max_side) * ex->micro;
        ex->host_out = ex->be->ops->host_alloc(ex->be, (size_t)elems * sizeof *ex->host_out);
        ex->host_dout = ex->be->ops->host_alloc(ex->be, (size_t)elems * sizeof *ex->host_dout);
    }
    return true;
}

// Waits for the send in flight from sb, named by its cut and peer; `when` says why it is awaited.
static void executor_wait_send(Executor *ex, MessageBuffer *sb, const char *when) {
    char what[256], peer[128];
    snprintf(what, sizeof what, "a send of layer %d's output (cut %d) to %s to be received (%s)",
             ex->plan->cuts[sb->cut].layer, sb->cut, topology_describe_peer(&ex->topo, sb->peer, peer, sizeof peer),
             when);
    transport_wait(ex->tr, sb->pending, what);
    sb->pending = NULL;
}

void executor_destroy(Executor *ex) {
    if (!ex) return;
    for (int s = 0; s < ex->n_sends; s++) {
        if (ex->sends[s].pending) executor_wait_send(ex, &ex->sends[s], "at exit");
        ex->be->ops->free(ex->be, ex->sends[s].data);
    }
    free(ex->sends);
    if (ex->program)
        for (int i = 0; i < ex->program->n_instrs; i++)
            if (ex->recv_data) ex->be->ops->free(ex->be, ex->recv_data[i]);
    for (int c = 0; c < ex->n_chunks; c++) {
        ExecutorChunk *ch = &ex->chunks[c];
        for (int s = ch->n_slots - 1; s >= 0; s--)
            if (ch->slots) graph_destroy(ch->slots[s]);
        free(ch->slots);
        free(ch->slot_micro);
        free(ch->layer_param_offset);
    }
    for (int i = 0; i < EXECUTOR_MAX_SIDES; i++) ex->be->ops->detect_loss_destroy(ex->be, ex->losses[i]);
    free(ex->chunks);
    free(ex->recv_data);
    free(ex->recv_pending);
    free(ex->spans);
    free(ex->last_use);
    free(ex->final_weight_pass);
    free(ex->layer_fwd_s);
    free(ex->layer_bwd_s);
    free(ex->layer_passes);
    ex->be->ops->host_free(ex->be, ex->host_out);
    ex->be->ops->host_free(ex->be, ex->host_dout);
    free(ex->mb_targets);
    free(ex);
}

int executor_n_chunks(const Executor *ex) { return ex->n_chunks; }
ExecutorChunk *executor_chunk(Executor *ex, int c) { return &ex->chunks[c]; }
bool executor_loads_images(const Executor *ex) { return ex->chunks[0].stage == 0; }

ExecutorStats executor_stats(const Executor *ex) {
    ExecutorStats s = ex->stats;
    s.batches = ex->batches_run;
    return s;
}
bool executor_loads_targets(const Executor *ex) {
    return ex->chunks[ex->n_chunks - 1].stage == ex->plan->n_stages - 1;
}

int64_t executor_output_elems(Executor *ex, int64_t side) {
    const Graph *g = ex->chunks[ex->n_chunks - 1].graph;
    const Layer *out = &g->layers[g->n_layers - 1];
    int64_t per_image = shape_elems(out->out_shape) / out->out_shape.n;
    if (!layer_kinds[out->kind]->detect_head) return per_image;  // Classify: (N, nc) whatever the size
    // Detect: (N, outputs per anchor, anchors), anchors = cells of every level.
    int64_t built = 0, now = 0;
    for (int i = 0; i < g->n_strides; i++) {
        int64_t s = g->strides[i];
        built += (ex->opt.max_side / s) * (ex->opt.max_side / s);
        now += (side / s) * (side / s);
    }
    return per_image / built * now;
}

// ---- messages ----------------------------------------------------------------------------------------

static int message_tag(const Executor *ex, MessageKind kind, int micro, int cut) {
    return (micro * (ex->plan->n_cuts + 1) + cut) * MESSAGE_KIND_COUNT + (int)kind;
}

static int64_t cut_elems(const Executor *ex, int cut) {
    return shape_elems(graph_layer_shape(ex->chunks[0].graph, ex->plan->cuts[cut].layer));
}

static void describe_message(const Executor *ex, const SchedInstr *in, char *buf, size_t n) {
    const PlanCut *c = &ex->plan->cuts[in->cut];
    char peer[128];
    snprintf(buf, n, "the %s of layer %d (cut %d) for micro-batch %d from %s",
             in->op == SCHED_OP_RECV_ACT ? "activation" : "gradient", c->layer, in->cut, in->micro,
             topology_describe_peer(&ex->topo, in->peer, peer, sizeof peer));
}

// Posts every receive of the batch into its own buffer (sized for the largest input once).
static void executor_post_receives(Executor *ex) {
    for (int i = 0; i < ex->program->n_instrs; i++) {
        const SchedInstr *in = &ex->program->instrs[i];
        if (in->op != SCHED_OP_RECV_ACT && in->op != SCHED_OP_RECV_GRAD) continue;
        MessageKind kind = in->op == SCHED_OP_RECV_ACT ? MESSAGE_ACTIVATION : MESSAGE_GRADIENT;
        ex->recv_pending[i] = ex->tr->ops->irecv(ex->tr, ex->recv_data[i], backend_act_bytes(ex->be, cut_elems(ex, in->cut)),
                                                 in->peer, message_tag(ex, kind, in->micro, in->cut));
    }
}

// Frees the send buffers whose transfer is done; returns the smallest free one of at least `bytes`,
// or adds one to the pool when none fits. So the pool grows only when more sends are in flight at
// once than before, or a message is larger than every free buffer. It is bounded by (the most sends
// in flight at once: a batch's SEND instructions, in validation executor_limit_pending_sends' limit)
// x (the distinct message sizes: cuts x input sides), and its buffers are kept for the rest of the
// run: growth to a high-water mark, reached in the first batches at each size, not a step's cost.
static MessageBuffer *executor_message_buffer(Executor *ex, size_t bytes) {
    MessageBuffer *pick = NULL;
    for (int s = 0; s < ex->n_sends; s++) {
        MessageBuffer *sb = &ex->sends[s];
        if (sb->pending && ex->tr->ops->test(ex->tr, sb->pending)) sb->pending = NULL;
        if (!sb->pending && sb->capacity >= bytes && (!pick || sb->capacity < pick->capacity)) pick = sb;
    }
    if (pick) return pick;
    ex->sends = yp_realloc(ex->sends, (size_t)(ex->n_sends + 1) * sizeof *ex->sends);
    pick = &ex->sends[ex->n_sends++];
    *pick = (MessageBuffer){.data = ex->be->ops->alloc(ex->be, bytes), .capacity = bytes};
    return pick;
}

// Waits for the oldest sends while more than `limit` are in flight (a stage running ahead of its
// consumers during validation would otherwise keep allocating buffers).
static void executor_limit_pending_sends(Executor *ex, int limit) {
    int pending = 0;
    for (int s = 0; s < ex->n_sends; s++) pending += ex->sends[s].pending != NULL;
    for (int s = 0; s < ex->n_sends && pending > limit; s++)
        if (ex->sends[s].pending) {
            executor_wait_send(ex, &ex->sends[s], "validation, too many in flight");
            pending--;
        }
}

// Sends `elems` activations of cut `cut` (in the backend's activation type: bf16 halves the bytes).
static void executor_send(Executor *ex, const void *src, int64_t elems, int peer, int cut, int tag) {
    size_t bytes = backend_act_bytes(ex->be, elems);
    MessageBuffer *sb = executor_message_buffer(ex, bytes);
    ex->be->ops->copy(ex->be, sb->data, src, bytes);
    sb->pending = ex->tr->ops->isend(ex->tr, sb->data, bytes, peer, tag);
    sb->peer = peer;
    sb->cut = cut;
}

// Lets the transport move messages while this rank computes: without a progress thread, a large
// message advances only inside transport calls, so the executor tests what is in flight between
// layers. Receives found complete are marked done (their RECV instruction then waits for nothing).
static void executor_progress(Executor *ex) {
    for (int s = 0; s < ex->n_sends; s++)
        if (ex->sends[s].pending && ex->tr->ops->test(ex->tr, ex->sends[s].pending)) ex->sends[s].pending = NULL;
    for (int i = ex->next_recv; i < ex->program->n_instrs; i++)
        if (ex->recv_pending[i] && ex->tr->ops->test(ex->tr, ex->recv_pending[i])) ex->recv_pending[i] = NULL;
}

// ---- slots -------------------------------------------------------------------------------------------

static Graph *chunk_slot(ExecutorChunk *c, int micro) {
    for (int s = 0; s < c->n_slots; s++)
        if (c->slot_micro[s] == micro) return c->slots[s];
    for (int s = 0; s < c->n_slots; s++)
        if (c->slot_micro[s] < 0) {
            c->slot_micro[s] = micro;
            return c->slots[s];
        }
    yp_fatal("stage %d: no free activation slot for micro-batch %d (%d slots)", c->stage, micro, c->n_slots);
}

// The high-water mark of saved activations: slots are taken only inside instructions and freed only
// at their end, so sampling each instruction before its release sees every peak.
static void executor_note_activations(Executor *ex) {
    int64_t held = 0;
    for (int c = 0; c < ex->n_chunks; c++)
        for (int s = 0; s < ex->chunks[c].n_slots; s++)
            if (ex->chunks[c].slot_micro[s] >= 0) held += ex->chunks[c].slot_activation_bytes;
    if (held > ex->stats.peak_activation_bytes) ex->stats.peak_activation_bytes = held;
}

static void chunk_release(ExecutorChunk *c, int micro) {
    for (int s = 0; s < c->n_slots; s++)
        if (c->slot_micro[s] == micro) c->slot_micro[s] = -1;
}

// ---- the loss (last stage) ---------------------------------------------------------------------------

// The detection loss's configuration for side x side inputs.
static DetectLossConfig executor_loss_config(const Executor *ex, int64_t side) {
    DetectLossConfig lc = detect_loss_config_for_graph(ex->chunks[ex->n_chunks - 1].graph, side);
    lc.box_gain = ex->opt.cfg->train.box;
    lc.cls_gain = ex->opt.cfg->train.cls;
    lc.dfl_gain = ex->opt.cfg->train.dfl;
    return lc;
}

// Before a batch's work is queued (a backend's loss may wait for the device to grow): the detection
// loss for side x side inputs, created on first use, and room for all of the batch's boxes, more
// than any micro-batch's, in the loss and in mb_targets.
//
// Allocation: nothing here allocates once the run has seen its largest batch of boxes and each of its
// input sides. A loss is created once per side (its anchor grid and work memory depend on the side):
// the sides are the multiples of 32 in the multi-scale range (loader_imgsz_range; train.imgsz alone
// without multi-scale), validation's train.imgsz among them, so there are at most
// (2 x multiscale x imgsz) / 32 + 1 losses and usually a handful. The boxes' buffers grow to the
// most boxes a batch has had (a high-water mark: the data decides it, the plan cannot).
static void executor_loss_reserve(Executor *ex, int64_t side, const Batch *data) {
    if (!executor_loads_targets(ex) || ex->classify) return;
    Backend *be = ex->be;
    if (ex->mb_targets_cap < data->n_targets) {
        ex->mb_targets_cap = data->n_targets;
        ex->mb_targets = yp_realloc(ex->mb_targets, (size_t)ex->mb_targets_cap * sizeof *ex->mb_targets);
    }
    YP_CHECK(side > 0 && side / EXECUTOR_SIDE_STEP < EXECUTOR_MAX_SIDES);
    BackendDetectLoss **slot = &ex->losses[side / EXECUTOR_SIDE_STEP];
    if (*slot) {
        be->ops->detect_loss_reserve(be, *slot, data->n_targets);
        return;
    }
    DetectLossConfig lc = executor_loss_config(ex, side);
    Error err = {0};
    if (!be->ops->detect_loss_create(be, &lc, ex->micro, data->n_targets, slot, &err))
        yp_fatal("detection loss: %s", err.message);
}

// The targets of images [first, first + n) of a batch, re-indexed from 0, into mb_targets (which
// executor_loss_reserve sized for the whole batch).
static int64_t micro_targets(Executor *ex, const Batch *batch, int64_t first, int64_t n) {
    YP_CHECK(ex->mb_targets_cap >= batch->n_targets);
    int64_t k = 0;
    for (int i = 0; i < batch->n_targets; i++) {
        TargetBox b = batch->targets[i];
        if (b.image < first || b.image >= first + n) continue;
        b.image -= (int32_t)first;
        ex->mb_targets[k++] = b;
    }
    return k;
}

static void executor_loss_add(ExecutorLoss *loss, const DetectLossParts *parts) {
    loss->box += parts->box;
    loss->cls += parts->cls;
    loss->dfl += parts->dfl;
    loss->instances += (double)parts->n_instances;
}

// Loss of images [first, first + n) of `data` from the output of graph g; with train, its gradient
// times grad_scale (fp16 loss scaling) goes to the output layer's dout.
static void executor_loss(Executor *ex, Graph *g, const Batch *data, int64_t first, int64_t n, bool train,
                          float grad_scale, ExecutorLoss *loss) {
    Backend *be = ex->be;
    Layer *out = graph_output(g);
    loss->n++;
    if (!ex->classify) {
        BackendDetectLoss *dl = ex->losses[g->input.shape.h / EXECUTOR_SIDE_STEP];
        YP_CHECK(dl != NULL);  // executor_loss_reserve ran at the start of the batch
        int64_t n_targets = micro_targets(ex, data, first, n);
        DetectLossParts parts;
        be->ops->detect_loss_compute(be, dl, n, out->out.data, ex->mb_targets, n_targets, grad_scale,
                                     train ? out->dout.data : NULL, &parts);
        executor_loss_add(loss, &parts);
        return;
    }
    int64_t n_out = tensor_elems(&out->out);
    be->ops->download_activation(be, ex->host_out, out->out.data, (size_t)n_out);
    float *dout = train ? ex->host_dout : NULL;
    loss->ce += classify_loss_compute(n, ex->opt.spec->nc, ex->host_out, data->labels + first, dout);
    if (!train) return;
    if (grad_scale != 1.0f)
        for (int64_t i = 0; i < n_out; i++) ex->host_dout[i] *= grad_scale;
    be->ops->upload_activation(be, out->dout.data, ex->host_dout, (size_t)n_out);
}

// ---- one training batch ------------------------------------------------------------------------------

// Before a batch's work is queued: room on the backend for each micro-batch's recipes and images.
static void executor_render_reserve(Executor *ex, const Batch *data) {
    if (!data || !data->recipes) return;
    int64_t largest = 0;
    for (int64_t first = 0; first < data->n; first += ex->micro) {
        int64_t bytes = 0;
        for (int64_t j = first; j < first + ex->micro && j < data->n; j++) bytes += render_recipe_bytes(&data->recipes[j]);
        if (bytes > largest) largest = bytes;
    }
    ex->be->ops->reserve_render(ex->be, ex->micro, largest);
}

// The clock of the layer times. A backend that queues its work (CUDA: its memory is not the host's)
// finishes what it has queued first, while measuring, so that each layer is charged its own kernels.
static double executor_clock(Executor *ex) {
    if (ex->measuring && !ex->be->host_memory) ex->be->ops->synchronize(ex->be);
    return clock_monotonic_s();
}

typedef struct BatchState {
    const ExecutorBatch *b;
    ExecutorLoss *loss;
    int n_reductions;
    TransportRequest *reductions[64 + PLAN_MAX_STAGES];
    int64_t *reduced_from;  // per chunk: gradients [reduced_from, param_elems) are being reduced
} BatchState;

static void executor_reduce(Executor *ex, BatchState *st, ExecutorChunk *c, int64_t begin, int64_t end) {
    if (end <= begin) return;
    if (st->n_reductions == (int)(sizeof st->reductions / sizeof *st->reductions)) {
        transport_wait_group(ex->tr, st->reductions[0], TRANSPORT_REPLICAS, "a gradient all-reduce");
        memmove(st->reductions, st->reductions + 1, (size_t)--st->n_reductions * sizeof *st->reductions);
    }
    ex->stats.allreduce_bytes += (end - begin) * (int64_t)sizeof(float);
    st->reductions[st->n_reductions++] = ex->tr->ops->iallreduce_sum_f32(
        ex->tr, c->graph->grad_data + begin, (size_t)(end - begin), TRANSPORT_REPLICAS);
}

// A chunk's last backward when its gradients are reduced: layer by layer, starting a bucket's
// all-reduce as soon as the layers after it are done, and testing the ones in flight so they progress.
static void executor_backward_bucketed(Executor *ex, BatchState *st, int c_index, Graph *g) {
    ExecutorChunk *c = &ex->chunks[c_index];
    int64_t *from = &st->reduced_from[c_index];
    for (int l = c->layer_end - 1; l >= c->layer_begin; l--) {
        double t0 = executor_clock(ex);
        graph_backward_layers(g, l, l + 1);
        if (ex->measuring) ex->layer_bwd_s[l] += executor_clock(ex) - t0;
        int64_t start = c->layer_param_offset[l - c->layer_begin];
        if (*from - start >= EXECUTOR_BUCKET_ELEMS) {
            executor_reduce(ex, st, c, start, *from);
            *from = start;
        }
        for (int r = 0; r < st->n_reductions;) {
            if (ex->tr->ops->test(ex->tr, st->reductions[r]))
                memmove(st->reductions + r, st->reductions + r + 1, (size_t)(--st->n_reductions - r) * sizeof *st->reductions);
            else r++;
        }
        executor_progress(ex);
    }
}

static void executor_backward(Executor *ex, BatchState *st, int i) {
    const SchedInstr *in = &ex->program->instrs[i];
    int ci = chunk_of_stage(ex, in->stage);
    ExecutorChunk *c = &ex->chunks[ci];
    Graph *g = chunk_slot(c, in->micro);
    if (in->op == SCHED_OP_BWD_WEIGHT) {
        // The weight pass runs every deferred convolution at once: its time goes to the layers in
        // proportion to their input-gradient time.
        double t0 = executor_clock(ex), input_s = 0;
        graph_backward_weight(g);
        if (!ex->measuring) return;
        double w = executor_clock(ex) - t0;
        for (int l = c->layer_begin; l < c->layer_end; l++) input_s += ex->layer_bwd_s[l];
        for (int l = c->layer_begin; l < c->layer_end; l++)
            ex->layer_bwd_s[l] += input_s > 0 ? w * ex->layer_bwd_s[l] / input_s : w / (c->layer_end - c->layer_begin);
        return;
    }
    graph_zero_activation_grads(g);
    // Gradients of this stage's outputs from every consuming stage, received earlier in the program.
    for (int k = 0; k < i; k++) {
        const SchedInstr *r = &ex->program->instrs[k];
        if (r->op != SCHED_OP_RECV_GRAD || r->stage != in->stage || r->micro != in->micro) continue;
        Tensor *dout = &g->layers[ex->plan->cuts[r->cut].layer].dout;
        ex->be->ops->accumulate(ex->be, ex->recv_data[k], dout->data, (size_t)tensor_elems(dout));
    }
    if (in->stage == ex->plan->n_stages - 1)
        executor_loss(ex, g, st->b->data, in->micro * ex->micro, ex->micro, true, st->b->loss_scale, st->loss);
    bool bucketed = in->op == SCHED_OP_BWD && ex->final_weight_pass[i] && st->b->reduce && ex->topo.replicas > 1;
    if (bucketed) {
        executor_backward_bucketed(ex, st, ci, g);
        return;
    }
    for (int l = c->layer_end - 1; l >= c->layer_begin; l--) {
        double t0 = executor_clock(ex);
        if (in->op == SCHED_OP_BWD_INPUT) graph_backward_input_layers(g, l, l + 1);
        else graph_backward_layers(g, l, l + 1);
        if (ex->measuring) ex->layer_bwd_s[l] += executor_clock(ex) - t0;
        executor_progress(ex);
    }
}

static void executor_instr(Executor *ex, BatchState *st, int i) {
    const SchedInstr *in = &ex->program->instrs[i];
    Backend *be = ex->be;
    char what[256];
    switch (in->op) {
    case SCHED_OP_LOAD:
        if (in->stage == 0) {
            Graph *g = chunk_slot(&ex->chunks[0], in->micro);
            int64_t image = 3 * st->b->side * st->b->side;
            const Batch *data = st->b->data;
            int64_t first = in->micro * ex->micro;
            if (data->recipes)
                be->ops->render_images(be, g->input.data, data->recipes + first, ex->micro, data->arena, st->b->side);
            else be->ops->upload_images(be, g->input.data, data->images + first * image, ex->micro, st->b->side,
                                        st->b->side);
        }
        break;  // the last stage's targets are in the batch already
    case SCHED_OP_RECV_ACT:
    case SCHED_OP_RECV_GRAD:
        describe_message(ex, in, what, sizeof what);
        if (ex->recv_pending[i]) transport_wait(ex->tr, ex->recv_pending[i], what);
        ex->recv_pending[i] = NULL;
        ex->next_recv = i + 1;
        if (in->op == SCHED_OP_RECV_ACT) {
            Graph *g = chunk_slot(&ex->chunks[chunk_of_stage(ex, in->stage)], in->micro);
            Tensor *t = &g->layers[ex->plan->cuts[in->cut].layer].out;
            be->ops->copy(be, t->data, ex->recv_data[i], backend_act_bytes(be, tensor_elems(t)));
        }
        break;
    case SCHED_OP_FWD: {
        ExecutorChunk *c = &ex->chunks[chunk_of_stage(ex, in->stage)];
        Graph *g = chunk_slot(c, in->micro);
        for (int l = c->layer_begin; l < c->layer_end; l++) {
            double t0 = executor_clock(ex);
            graph_forward_layers(g, l, l + 1, true);
            if (ex->measuring) ex->layer_fwd_s[l] += executor_clock(ex) - t0, ex->layer_passes[l]++;
            executor_progress(ex);
        }
        break;
    }
    case SCHED_OP_SEND_ACT:
    case SCHED_OP_SEND_GRAD: {
        bool act = in->op == SCHED_OP_SEND_ACT;
        Graph *g = chunk_slot(&ex->chunks[chunk_of_stage(ex, in->stage)], in->micro);
        Layer *layer = &g->layers[ex->plan->cuts[in->cut].layer];
        const Tensor *t = act ? &layer->out : &layer->dout;
        int64_t elems = cut_elems(ex, in->cut);
        executor_send(ex, t->data, elems, in->peer, in->cut,
                      message_tag(ex, act ? MESSAGE_ACTIVATION : MESSAGE_GRADIENT, in->micro, in->cut));
        if (in->peer != ex->topo.pipeline_rank) ex->stats.p2p_bytes += (int64_t)backend_act_bytes(be, elems);
        break;
    }
    case SCHED_OP_BWD:
    case SCHED_OP_BWD_INPUT:
    case SCHED_OP_BWD_WEIGHT: executor_backward(ex, st, i); break;
    case SCHED_OP_REDUCE_GRADS:
        if (st->b->reduce && ex->topo.replicas > 1) {
            int ci = chunk_of_stage(ex, in->stage);
            executor_reduce(ex, st, &ex->chunks[ci], 0, st->reduced_from[ci]);
            st->reduced_from[ci] = 0;
        }
        break;
    case SCHED_OP_STEP:
        for (int r = 0; r < st->n_reductions; r++)
            transport_wait_group(ex->tr, st->reductions[r], TRANSPORT_REPLICAS, "a gradient all-reduce");
        st->n_reductions = 0;
        break;
    case SCHED_OP_COUNT: yp_fatal("bad instruction");
    }
    executor_note_activations(ex);
    if (ex->last_use[i] >= 0)
        chunk_release(&ex->chunks[ex->last_use[i] / ex->plan->micro_batches], ex->last_use[i] % ex->plan->micro_batches);
}

static void executor_set_input_size(Executor *ex, int64_t n, int64_t side) {
    Error err = {0};
    for (int c = 0; c < ex->n_chunks; c++)
        for (int s = 0; s < ex->chunks[c].n_slots; s++)
            if (!graph_set_input_size(ex->chunks[c].slots[s], n, side, side, &err)) yp_fatal("%s", err.message);
}

void executor_train_batch(Executor *ex, const ExecutorBatch *b, bool record, ExecutorLoss *loss) {
    executor_set_input_size(ex, ex->micro, b->side);
    executor_loss_reserve(ex, b->side, b->data);
    executor_render_reserve(ex, b->data);
    int64_t reduced_from[PLAN_MAX_STAGES];
    for (int c = 0; c < ex->n_chunks; c++) reduced_from[c] = ex->chunks[c].graph->param_elems;
    BatchState st = {.b = b, .loss = loss, .reduced_from = reduced_from};
    // The first batch warms up; on a backend that queues its work, measuring synchronises around every
    // layer (and so stops the host from queueing ahead), so only a few batches are measured there.
    int64_t run = ex->batches_run++;
    if (b->reduce && ex->topo.replicas > 1) ex->stats.reducing_batches++;
    ex->measuring = run > 0 && b->side == ex->opt.cfg->train.imgsz &&
                    (ex->be->host_memory || run <= EXECUTOR_QUEUED_MEASURED_BATCHES);
    // A recorded batch's spans become the trace (executor_trace_write), where each instruction's
    // span shows its own work. A backend that queues its work (CUDA) returns from a forward or a
    // backward once its kernels are queued, so a recorded batch waits for the backend at its start
    // (the previous step's queued work is not this batch's) and after each compute instruction: a
    // FWD or BWD span then ends when its kernels have run, and the next span starts after them.
    // Results do not depend on these waits: the transports follow the backend's order
    // (transport.h), and every transfer to the host and the loss wait for what they read. So other
    // batches do not wait and the host queues ahead. On the CPU, synchronize does nothing.
    if (record) ex->be->ops->synchronize(ex->be);
    double start = clock_monotonic_s();
    executor_post_receives(ex);
    ex->next_recv = 0;
    char text[96];
    for (int i = 0; i < ex->program->n_instrs; i++) {
        const SchedInstr *in = &ex->program->instrs[i];
        failure_set_activity("%s", sched_instr_format(text, sizeof text, in));
        double t0 = clock_monotonic_s();
        executor_instr(ex, &st, i);
        if (record && (in->op == SCHED_OP_FWD || in->op == SCHED_OP_BWD || in->op == SCHED_OP_BWD_INPUT ||
                       in->op == SCHED_OP_BWD_WEIGHT))
            ex->be->ops->synchronize(ex->be);
        if (record) ex->spans[i] = (SchedSpan){.start_s = t0 - start, .end_s = clock_monotonic_s() - start};
    }
    for (int c = 0; c < ex->n_chunks; c++)
        for (int s = 0; s < ex->chunks[c].n_slots; s++) YP_CHECK(ex->chunks[c].slot_micro[s] < 0);
    if (record) {
        ex->recorded = true;
        ex->batch_s = clock_monotonic_s() - start;
    }
}

// ---- validation --------------------------------------------------------------------------------------

void executor_forward(Executor *ex, int64_t n, int64_t side, const uint8_t *images, float *host_out,
                      const Batch *targets, ExecutorLoss *loss) {
    executor_set_input_size(ex, n, side);
    if (targets) executor_loss_reserve(ex, side, targets);
    Backend *be = ex->be;
    char what[256], whom[128];
    for (int ci = 0; ci < ex->n_chunks; ci++) {
        ExecutorChunk *c = &ex->chunks[ci];
        Graph *g = c->graph;
        failure_set_activity("validation, stage %d of a batch of %lld images", c->stage, (long long)n);
        if (c->stage == 0) be->ops->upload_images(be, g->input.data, images, n, side, side);
        for (int k = 0; k < ex->plan->n_cuts; k++) {
            const PlanCut *cut = &ex->plan->cuts[k];
            if (cut->to_stage != c->stage) continue;
            int peer = cut->from_stage % ex->plan->n_ranks;
            Tensor *t = &g->layers[cut->layer].out;
            snprintf(what, sizeof what, "the validation activation of layer %d (cut %d) from %s", cut->layer, k,
                     topology_describe_peer(&ex->topo, peer, whom, sizeof whom));
            size_t bytes = backend_act_bytes(be, tensor_elems(t));
            MessageBuffer *sb = executor_message_buffer(ex, bytes);  // a free buffer to receive into
            sb->pending = ex->tr->ops->irecv(ex->tr, sb->data, bytes, peer, message_tag(ex, MESSAGE_VALIDATION, 0, k));
            transport_wait(ex->tr, sb->pending, what);
            sb->pending = NULL;
            be->ops->copy(be, t->data, sb->data, bytes);
        }
        graph_forward(g, false);
        for (int k = 0; k < ex->plan->n_cuts; k++) {
            const PlanCut *cut = &ex->plan->cuts[k];
            if (cut->from_stage != c->stage) continue;
            executor_send(ex, g->layers[cut->layer].out.data, tensor_elems(&g->layers[cut->layer].out),
                          cut->to_stage % ex->plan->n_ranks, k, message_tag(ex, MESSAGE_VALIDATION, 0, k));
        }
        executor_limit_pending_sends(ex, 4 * (ex->plan->n_cuts + 1));
        if (c->stage == ex->plan->n_stages - 1) {
            const Tensor *out = &graph_output(g)->out;
            be->ops->download_activation(be, host_out, out->data, (size_t)tensor_elems(out));
            if (targets) executor_loss(ex, g, targets, 0, n, false, 1.0f, loss);
        }
    }
}

// ---- measured profile ------------------------------------------------------------------------------

bool executor_profile_write(Executor *ex, const char *path, Error *err) {
    int n = ex->opt.spec->n_rows;
    double *mine = yp_malloc((size_t)(3 * n) * sizeof *mine);
    memcpy(mine, ex->layer_fwd_s, (size_t)n * sizeof *mine);
    memcpy(mine + n, ex->layer_bwd_s, (size_t)n * sizeof *mine);
    memcpy(mine + 2 * n, ex->layer_passes, (size_t)n * sizeof *mine);
    ex->tr->ops->allreduce_sum_f64(ex->tr, mine, (size_t)(3 * n), TRANSPORT_WORLD);  // every replica measured
    bool ok = true;
    if (ex->topo.world_rank == 0) {
        CostProfile *p = cost_profile_create(n, ex->micro, ex->opt.cfg->train.imgsz);
        for (int l = 0; l < n; l++) {
            double passes = mine[2 * n + l] > 0 ? mine[2 * n + l] : 1;
            snprintf(p->rows[l].module, sizeof p->rows[l].module, "%s", ex->opt.spec->rows[l].module);
            p->rows[l].fwd_s = mine[l] / passes;
            p->rows[l].bwd_s = mine[n + l] / passes;
        }
        FILE *f = fopen(path, "w");
        if (!f) ok = error_set(err, "%s: cannot write the measured profile", path);
        else {
            cost_profile_write(p, f);
            fclose(f);
        }
        cost_profile_destroy(p);
    }
    free(mine);
    return ok;
}

// ---- trace -------------------------------------------------------------------------------------------

bool executor_trace_write(Executor *ex, const char *path, Error *err) {
    const Topology *tp = &ex->topo;
    int n = ex->program->n_instrs;
    size_t bytes = ex->recorded ? (size_t)n * sizeof *ex->spans : 0;
    void *all = NULL;
    size_t *sizes = tp->world_rank == 0 ? yp_malloc((size_t)tp->world_size * sizeof *sizes) : NULL;
    ex->tr->ops->gather_bytes(ex->tr, ex->spans, bytes, &all, sizes);
    bool ok = true;
    if (tp->world_rank == 0) {
        const Schedule *s = ex->opt.ep->schedule;
        SchedSim sim = {.n_ranks = s->n_ranks, .step_s = ex->batch_s};
        sim.spans = yp_calloc((size_t)s->n_ranks, sizeof *sim.spans);
        size_t *offset = yp_calloc((size_t)tp->world_size + 1, sizeof *offset);
        for (int r = 0; r < tp->world_size; r++) offset[r + 1] = offset[r] + sizes[r];
        for (int pr = 0; pr < s->n_ranks; pr++) {
            int w = topology_world_rank(tp, pr, 0);
            YP_CHECK(sizes[w] == (size_t)s->programs[pr].n_instrs * sizeof(SchedSpan));
            sim.spans[pr] = (SchedSpan *)((char *)all + offset[w]);
            double end = sim.spans[pr][s->programs[pr].n_instrs - 1].end_s;
            if (end > sim.step_s) sim.step_s = end;
        }
        const PipelinePlan *plan = ex->plan;
        sim.images_per_s = (double)(plan->replicas * plan->micro_batches * plan->micro_batch_images) / sim.step_s;
        FILE *f = fopen(path, "w");
        if (!f) ok = error_set(err, "%s: cannot write the trace", path);
        else {
            sched_trace_write(f, plan, s, &sim);
            fclose(f);
        }
        free(offset);
        free(sim.spans);
    }
    free(all);
    free(sizes);
    return ok;
}
