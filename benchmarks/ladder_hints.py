"""Level-2 hints of the ladder suite: what each README row changed, written by us from the row's facts.

Never a paraphrase of upstream sentences: `ladder_hint_overlap.py` checks that no text here shares a run of 8 or
more words with the row's README description or the record folder's notes. Keyed by (track, README row).
"""

HINTS: dict[tuple[int, int], str] = {
    (1, 22): "Gradient synchronisation across the GPUs is made cheaper.",
    (1, 23): "Communication of gradients now runs while the backward pass is still computing.",
    (1, 24): "Each rank receives only its shard of the summed gradients instead of the full sum.",
    (1, 25): "No model change: the stack moves to a July 2025 PyTorch nightly (2.9 dev), which is faster.",
    (1, 26): "Training sequences begin at document boundaries, and the learning-rate decay phase is lengthened "
             "to 45% of training.",
    (1, 27): "One MLP weight is stored transposed, and a custom Triton kernel computes the symmetric matrix "
             "products inside the orthogonalising optimizer.",
    (1, 28): "A cheap learned gate, fed from a few input channels, scales each attention head's output.",
    (1, 29): "Attention switches to FlashAttention-3 over variable-length documents capped at 2048 tokens, and "
             "the window-size schedule is retuned.",
    (1, 30): "The MLP of the first block is removed.",
    (1, 31): "Rotary position frequencies are rescaled YaRN-style whenever the attention window grows, in "
             "training and at evaluation.",
    (1, 32): "Several speedups: leaner multi-GPU communication, a better gate on skip connections, and more "
             "bfloat16 arithmetic.",
    (1, 33): "Batches are loaded and indexed in a background thread, and the last layer sees a wider attention "
             "window during evaluation.",
    (1, 34): "Each token's embedding is blended with the previous token's through a small learned gate.",
    (1, 35): "The first block loses its attention, evaluation widens every long window, and the schedule is "
             "retuned.",
    (1, 36): "Orthogonalised updates are sized per matrix shape, and the attention and MLP gradient shards are "
             "exchanged in one collective call.",
    (1, 37): "The training loss is evaluated in bfloat16 rather than float32.",
    (1, 38): "The iteration that orthogonalises the updates uses per-step tuned polynomial coefficients (the "
             "Polar Express method).",
    (1, 39): "Parameters handled by Adam step on alternate iterations only, and the batch shrinks.",
    (1, 40): "A learned subtraction of an earlier layer's residual before the output head, plus tuned "
             "hyperparameters and cheaper padding of scalar parameters.",
    (1, 41): "The matrix optimizer gains per-neuron second-moment normalisation after orthogonalisation.",
    (1, 42): "That optimizer's learning rate and its step bookkeeping are corrected.",
    (1, 43): "Weight decay is applied only where it agrees in sign with the update, following a schedule.",
    (1, 44): "Gradient communication for Adam parameters starts from hooks during the backward pass.",
    (1, 45): "Skip connections between blocks are rearranged and the initial values of their decay factors "
             "change.",
    (1, 46): "The number of tokens per step grows during training rather than staying fixed.",
    (1, 47): "An attention scale factor is folded into the weights instead of the activations, and a warmup bug "
             "is fixed.",
    (1, 48): "Faster matrix-optimizer code, an extra folded scale, reshaped parameter matrices, a new learning "
             "rate and a different normalisation axis.",
    (1, 49): "Part of each key's channels are taken from the preceding position.",
    (1, 50): "The sign-agreeing weight decay now covers the Adam-trained parameters too.",
    (1, 51): "Input embedding and output head share one matrix again, with new FP8 scaling constants.",
    (1, 52): "Scalar parameters get heavier momentum averaging and are held still across schedule changes; the "
             "token-blending gate learns more slowly; Adam gradients are summed with a single all-reduce.",
    (1, 53): "An auxiliary loss predicts several future tokens, the shared embedding and head matrix splits in "
             "two after two thirds of training, and rates and decay are adjusted.",
    (1, 54): "Output logits are rescaled differently for positive and negative values.",
    (1, 55): "Learned gates now scale the value embeddings and a skip path.",
    (1, 56): "Adam is compiled and keeps higher-precision state, and gate weights move from the matrix optimizer "
             "to Adam.",
    (1, 57): "Attention and MLP weights are kept in bfloat16 with mixed-precision updates; the two optimizers' "
             "work is interleaved and Adam's momentum settings differ per group.",
    (1, 58): "Attention heads are processed in coupled pairs.",
    (1, 59): "The MLP's first matmul and its squared-ReLU activation run in a single custom Triton kernel.",
    (1, 60): "The capped-logit loss over several future tokens is computed by one custom Triton kernel.",
    (1, 61): "Both optimizers run under one shared implementation, and the output head's weight is stored "
             "transposed.",
    (1, 62): "An extra embedding table indexed by a hash of the current and previous token is added.",
    (1, 63): "Value embeddings that were shared between layers get separate tables.",
    (1, 64): "Attention's value and output projections start from small non-zero weights instead of zeros.",
    (1, 65): "All value-embedding tables are stored as one parameter.",
    (1, 66): "The stack moves to PyTorch 2.10 (this row has no log folder).",
    (1, 67): "The capped-logit kernels are tuned, and FP8 conversion of the head's inputs happens inside the "
             "kernel.",
    (1, 68): "The token-pair hashing is computed on the GPU instead of the CPU.",
    (1, 69): "Custom GPU kernels are tuned further.",
    (1, 70): "New placement of value embeddings across layers, with retuned gates for them.",
    (1, 71): "Only the used rows of the token-pair table have their gradients exchanged, and CPU-side data "
             "loading is sped up.",
    (1, 72): "The learning-rate floor is raised and the longest sequence length follows a schedule.",
    (1, 73): "The residual stream is split into parallel streams mixed by learned weights (hyper-connections).",
    (1, 74): "The forward pass becomes one flat function, some scalar weights after attention go away, and new "
             "kernels handle transposes.",
    (1, 75): "The loss kernel is made faster.",
    (1, 76): "The transpose kernel is reused and tuned in the backward pass.",
    (1, 77): "The parallel residual streams are dropped in favour of keeping one earlier activation to add back.",
    (1, 78): "The cap on how many documents one attention call may hold is set from the data's real statistics.",
    (1, 79): "The loss's forward and backward share one kernel, so the capped-logit sigmoid is not computed twice.",
    (1, 80): "Query and key matrices are orthogonalised per pair of heads rather than as one large matrix.",
    (1, 81): "Each block reads a learned, input-dependent mix of all earlier layers' outputs (MUDD connections).",
    (1, 82): "A learned per-head gate removes the part of each attention output that lies along its own value "
             "direction (XSA).",
    (1, 83): "The token-pair embedding gets a random sign per hash bucket, which softens collisions.",
    (1, 84): "The MLP's widening matmul runs in FP8 in the forward pass.",
    (1, 85): "The layer-mixing connections get gates, and one layer's attention heads get cheap input-dependent "
             "composition.",
    (2, 3): "Decoupled weight decay is switched on.",
    (2, 4): "The polynomial that orthogonalises the matrix updates uses retuned coefficients.",
    (2, 5): "The final learning-rate decay phase is made longer.",
    (2, 6): "MLP weights decay twice as strongly, queries, keys and values are normalised, gradient summation "
            "overlaps the optimizer step, and the skip pattern changes; from here on the compiler's "
            "coordinate-descent autotuning is on (the README marks this row).",
    (2, 7): "The output head leaves FP8, logits are capped with an inverse-square-root curve, the matrix "
            "optimizer is sharded with mixed precision, and some weights are merged.",
    (2, 8): "The attention window grows on a cubic schedule up to twice the former maximum.",
    (2, 9): "Two more value-embedding tables are added.",
    (2, 10): "A second token embedding is added to the input.",
    (2, 11): "The stack moves to a December 2025 PyTorch 2.10 nightly (this row has no log folder).",
    (2, 12): "An outer lookahead-style optimizer wraps the inner ones.",
    (2, 13): "The matrix optimizer's updates are smoothed with an exponential moving average.",
    (2, 14): "The outer optimizer and the update smoothing are used together.",
    (2, 15): "The activation from two thirds of the depth is subtracted, with a learned weight, just before the "
             "output head.",
    (2, 16): "Neighbouring-token embedding blending plus an auxiliary loss on several future tokens.",
    (2, 17): "A superfluous operation in building the attention mask is removed.",
    (2, 18): "Many techniques from the GPT-2 small track are ported over at once.",
}
