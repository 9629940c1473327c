"""Every knob of aplt_jax, with its default. Other configs import this one and override.

Run any config as `python main.py --config=configs/<file>.py[:preset] --workdir=DIR`, and change a
knob with `--config.<key>=<value>` (the config is locked: a mistyped key is an error).
"""
from __future__ import annotations

import ml_collections
from ml_collections import config_dict

METHODS = ("supervised", "fixmatch", "flexmatch", "freematch", "softmatch", "aplt")


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = "aplt"  # One of METHODS.
  c.seed = 0  # Initialisation, data order, augmentation, and the split unless data.split_seed.
  c.rng_impl = "rbg"  # PRNG implementation (rbg compiles model init ~5x faster than threefry on CPU).

  # ---- Data -------------------------------------------------------------------------------
  c.data = ml_collections.ConfigDict()
  c.data.name = "synthetic"  # Dataset registry name (aplt_jax/data/__init__.py).
  c.data.data_dir = ""  # Prepared (ArrayRecord) datasets; "" = ~/tensorflow_datasets.
  c.data.manual_dir = ""  # Raw videos / arrays, for datasets prepared from files.
  c.data.labeled_ratio = config_dict.placeholder(float)  # Exactly one of these two is set.
  c.data.labels_per_class = config_dict.placeholder(int)
  c.data.split_seed = config_dict.placeholder(int)  # None: use `seed`.
  c.data.num_classes = 12  # Must agree with the dataset.
  c.data.eval_split = "test"  # test: reported tables | val: choosing defaults and variants.
  # Validation carved from the training side where the source has none (sequences: whole
  # subjects when known); never trained on. Synthetic: data.synthetic.num_val.
  c.data.val_fraction = 0.0
  c.data.read_threads = 4  # Grain read threads for the training input pipeline.
  c.data.prefetch = 4  # Batches prefetched ahead of the train step.
  c.data.read_workers = 0  # Grain worker processes for training batches (0: threads only).
  # The built-in synthetic micro-action dataset (DESIGN 4.1).
  c.data.synthetic = ml_collections.ConfigDict()
  c.data.synthetic.num_train = 1200
  c.data.synthetic.num_val = 0
  c.data.synthetic.num_test = 600
  c.data.synthetic.num_frames = 8
  c.data.synthetic.size = 32
  c.data.synthetic.seed = 0  # The dataset's own seed (fixed across runs: runs differ by `seed`).
  # Pose and sensor sequences, data.name = npz | npy_folder | watch (aplt_jax/data/sequences/);
  # the source is data.manual_dir (watch: the file shipped in the seglearn package).
  c.data.sequence = ml_collections.ConfigDict()
  c.data.sequence.window = config_dict.placeholder(int)  # Steps per window; None: the dataset's
  # default (watch: 200 = 4 s at 50 Hz; npz / npy_folder: 0 = whole sequences, one length).
  c.data.sequence.stride = config_dict.placeholder(int)  # None: the dataset's (watch 100) or half.
  c.data.sequence.test_subjects = ()  # Held-out subjects; (): the dataset's (watch: 8, 9, 10).
  c.data.sequence.val_subjects = ()  # Validation subjects; (): the dataset's (watch: 7).
  c.data.sequence.test_fraction = 0.2  # Held out when the source has no split nor test subjects.
  c.data.sequence.test_seed = 0  # Seed of that train / test draw (the dataset's own, fixed).
  c.data.sequence.normalize = True  # Per-channel standardisation, statistics of the train split.
  # Real videos, data.name = ma52 | ma12 | list_files | class_folder, prepared once from
  # data.manual_dir by `python -m aplt_jax.prepare` (these knobs name the prepared copy).
  c.data.video = ml_collections.ConfigDict()
  c.data.video.num_frames = 8  # T: TSN segments, the frames the model sees per clip.
  c.data.video.frames_per_segment = 2  # Stored per segment; training picks one (temporal jitter).
  c.data.video.height = 128  # Stored frame size (scaled to cover it, then centre-cropped).
  c.data.video.width = 128
  c.data.video.test_fraction = 0.2  # class_folder without split folders: held out per class.

  # ---- Model ------------------------------------------------------------------------------
  c.model = ml_collections.ConfigDict()
  c.model.name = "tsm_resnet10"  # Backbone registry name (aplt_jax/models/__init__.py).
  c.model.width_mult = 0.25
  c.model.shift_div = 8
  c.model.shift = True
  c.model.stem = "small"  # small: 3x3/2 conv | cifar: 3x3/1 | imagenet: 7x7/2 + pool (>= 112 px).
  # rgb | diff | rgb_diff. Synthetic micro-actions need `diff`: from RGB (or rgb_diff) a small
  # model memorises appearance and stays at chance on test; pretrained real-video models use rgb.
  c.model.input_mode = "diff"
  c.model.dtype = "float32"  # "bfloat16" on accelerators (float32 master weights).
  c.model.pretrained = ""  # torchvision ResNet state_dict (.pth / .safetensors) to start from.
  c.model.image_size = 32  # Model input side, after cropping.
  # Temporal convolution network for sequences (model.name = "tcn", aplt_jax/models/tcn.py).
  c.model.tcn_width = 64  # Channels of every block (= the feature dimension d).
  c.model.tcn_depth = 4  # Residual blocks; block i dilates by 2**i.
  c.model.tcn_kernel = 5  # Temporal kernel size.
  c.model.tcn_stride = 2  # Stride of the stem conv (time downsampling before the blocks).
  # Any backbone: 0, or the width of a projection head (two layers) whose output the prototype
  # branch uses (k-means, CosFace, the proto head) while the linear head reads the backbone.
  c.model.proj_dim = 0

  # ---- Augmentation (DESIGN 5) ------------------------------------------------------------
  c.augment = ml_collections.ConfigDict()
  c.augment.crop_scale = (0.6, 1.0)
  c.augment.crop_ratio = (3 / 4, 4 / 3)
  c.augment.flip = True  # False where classes are left/right specific.
  c.augment.num_ops = 2
  c.augment.magnitude_max = 1.0
  c.augment.cutout = 0.5

  # ---- Sequence augmentation (aplt_jax/augment/sequence.py; modality "sequence") ---------
  c.augment_seq = ml_collections.ConfigDict()
  c.augment_seq.out_len = 0  # Time steps of every view; 0: the stored length.
  c.augment_seq.crop_scale = (0.8, 1.0)  # Weak: random time crop (fraction), resampled to out_len.
  c.augment_seq.scale_std = 0.1  # Weak: per-channel gain ~ N(1, scale_std).
  c.augment_seq.jitter_std = 0.03  # Weak: additive Gaussian noise (inputs have unit std).
  c.augment_seq.magnitude_warp = 0.2  # Strong: std of a smooth random per-channel gain curve.
  c.augment_seq.time_warp = 0.5  # Strong: max relative speed change of a smooth time warp (< 1).
  c.augment_seq.channel_drop = 0.1  # Strong: probability of zeroing each channel (or joint).
  c.augment_seq.time_mask = 0.2  # Strong: max fraction of the steps zeroed, as one span.
  # Both views: with probability 1/2 the left-right reflection, () for none: a sign per element
  # of the last axis, and for skeletons the left <-> right joint permutation.
  c.augment_seq.mirror_sign = ()
  c.augment_seq.mirror_joints = ()
  # Both views: the data's own reflection where its reader declares one (watch) and mirror_sign
  # is empty; other data: no mirror (logged).
  c.augment_seq.dataset_mirror = False

  # ---- Optimisation -----------------------------------------------------------------------
  c.batch_size = 16  # Labeled clips per global step (divisible by the device count).
  c.uratio = 2  # mu: unlabeled clips per labeled clip.
  c.total_steps = 2000  # Global steps, warm-up included.
  c.warmup_steps = 200  # Supervised warm-up (labeled loss only).
  c.steps_per_round = -1  # Online steps per round; -1: one pass over the unlabeled set.
  c.ema_decay = 0.999
  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 0.03
  c.optim.momentum = 0.9
  c.optim.nesterov = True
  c.optim.weight_decay = 5e-4  # On kernels only (not biases or BatchNorm).
  c.optim.schedule = "cosine"  # "cosine": lr * cos(7 pi k / 16 K) (FixMatch's); or "constant".
  c.optim.grad_clip = 0.0  # Global-norm clipping; 0 disables.

  # ---- SSL methods (USB definitions) -------------------------------------------------------
  c.ssl = ml_collections.ConfigDict()
  c.ssl.threshold = 0.95  # tau_on: FixMatch / FlexMatch confidence threshold (E7).
  c.ssl.lambda_u = 1.0  # Weight of the unlabeled losses (E9).
  c.ssl.flexmatch = ml_collections.ConfigDict(dict(thresh_warmup=True))
  c.ssl.freematch = ml_collections.ConfigDict(dict(ema=0.999, ent_weight=0.001))
  c.ssl.softmatch = ml_collections.ConfigDict(dict(ema=0.999, n_sigma=2.0, dist_align=True))

  # ---- APLT (DESIGN 2) ----------------------------------------------------------------------
  c.aplt = ml_collections.ConfigDict()
  c.aplt.labeled_views = 4  # V weak views per labeled clip in the offline phase (E1).
  c.aplt.kmeans_max_iter = 100
  c.aplt.kmeans_tol = 1e-5
  c.aplt.threshold = "quantile"  # quantile | class_stats | labeled_spread | none (E3).
  c.aplt.threshold_q = 0.3
  c.aplt.threshold_kappa = 0.0
  c.aplt.labeled_spread_q = 0.9
  c.aplt.scale = 16.0  # s, prototype-classifier logit scale.
  c.aplt.margin = 0.2  # m, CosFace margin (0: plain scaled-cosine softmax).
  c.aplt.alpha = 1.0  # Weight of L_sup^margin.
  c.aplt.beta = 1.0  # Weight of L_u^margin.
  c.aplt.offline_every = 1  # Rounds per offline phase.
  c.aplt.sync = False  # Ablation: pseudo-labels from the current online predictions each step.
  c.aplt.embed_ema = True  # Offline embedding with the EMA parameters.
  # The offline phase's strength (DESIGN 2, "Open"; chosen on validation splits,
  # docs/choosing_the_offline_phase.md).
  c.aplt.select = "distance"  # Score the threshold screens: distance | margin | prob.
  c.aplt.center = False  # Centre the offline features (and the prototype branch's) on their mean.
  # The frozen prototypes m_c: refined (E4, labeled + kept unlabeled) | labeled (labeled only).
  c.aplt.prototypes = "refined"
  # 0: off; r > 0: a kept row must lie in one of r*C unconstrained k-means modes whose labeled
  # rows do not contradict its cluster label (offline.vouched_rows), judged by vouch_rule:
  # unanimous (all carry it) | majority (most do) | veto (some do, or the mode has none) |
  # decisive (unanimous, or the mode's labeled rows carry several labels) | gated (unanimous
  # while no mode mixes labeled rows of two labels, else all pass).
  c.aplt.vouch_modes = 3  # 0 before the third validation round.
  c.aplt.vouch_rule = "gated"
  # How the semi-supervised k-means assigns unlabeled rows: nearest (centre) | balanced (Sinkhorn
  # on s*cos, cluster sizes following the labeled rows' class frequencies; kmeans.balance_offsets).
  c.aplt.assign = "nearest"
  # The kept offline labels' weights in E8 and the head term: uniform (1 each) | class_balanced
  # (each class's share follows the labeled class frequencies, not its cluster's size).
  c.aplt.kept_weight = "uniform"
  c.aplt.threshold_q_final = config_dict.placeholder(float)  # q grows linearly to this by the
  # last round (None: q stays aplt.threshold_q).
  c.aplt.head_weight = 1.0  # gamma: kept offline labels also train the linear head h (E7-like).
  c.aplt.rampup_steps = 0  # alpha, beta, gamma ramp from 0 over this many steps after warm-up.
  c.aplt.online_agree = False  # E7 counts only where the online label equals the offline cluster.
  # E8 and the head term count only where the kept offline label equals the online argmax.
  c.aplt.offline_agree = False
  # Weight of E7 (FixMatch's online term) in APLT's loss. 0 (with head_weight 1): the parametric
  # head learns from the offline labels instead, chosen on validation
  # (docs/choosing_the_offline_phase.md); 1 with head_weight 0 is the paper figure's objective.
  c.aplt.online_weight = 0.0

  # ---- Evaluation, logging, checkpoints -----------------------------------------------------
  c.eval = ml_collections.ConfigDict()
  c.eval.every_steps = 500  # Also at the end of every round and of training.
  c.eval.batch_size = 64
  c.eval.head = "linear"  # linear (h) | proto | ensemble.
  c.eval.write_features = False  # WORKDIR/features_test.npz for the embedding figure.
  c.log_every = 50
  c.checkpoint_every = 200  # Also after warm-up and after every offline phase.
  c.keep_checkpoints = 2
  c.progress = True  # tqdm bars.
  return c
