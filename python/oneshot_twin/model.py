"""The networks oneshot-bench builds, in PyTorch, with its parameter names and layouts.

A checkpoint of the harness (safetensors: the tensors, and its `model_config` in the metadata)
loads here without conversion: `load("runs/<run-id>/best.safetensors")` gives the network in
eval mode, an ensemble checkpoint (`ensemble_members` in the metadata, tensors under
`members.<m>.`) the ensemble, whose logit is the mean of its members'. The module tree mirrors
the Swift one (`Sources/Model/EmbeddingNetwork.swift`): PyTorch's `nn.Sequential` numbering is the
names' numbering, ReLU and pooling included.

    model_config keys: backbone (vgg16 | koch), inputSize, width, batchNorm, blocks, blockPooling,
    blockPadding, relationModule (linear | convolutional), headHidden, headActivation (none | relu),
    similarity (head | euclidean | cosine | relation), classes; defaults as in
    Sources/Model/ModelConfig.swift. A network of `similarity: euclidean` (a prototypical network)
    has no head: a pair's score is the negative squared Euclidean distance of its embeddings, and
    an episode's class is scored by its prototype (`prototype_scores`). With `classes`, the network
    also carries `classifier`, Linear(features, classes), the fine-tuning baseline's pre-training
    classifier; its episodes are scored by a classifier fitted to the support set (`finetune_scores`).
    A network of `similarity: relation` (a relation network) scores a pair by its relation module
    on [f1, f2] (`RELATION_WIDTH`), a class by the module on [query, mean support embedding].
    First-order MAML (`objective: maml`, a network of `similarity: euclidean`) scores an episode by
    adapting the network to its support images (`maml_scores`).
"""
import json

import torch
import torch.nn as nn

VGG16_BLOCKS = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
DEFAULTS = {"inputSize": 105, "width": 1.0, "batchNorm": False, "blocks": None, "blockPooling": None, "blockPadding": None, "relationModule": "linear",
            "headHidden": 512, "headActivation": "none", "similarity": "head", "resampling": "area", "initialization": "kaiming", "classes": None}
# resampling (area | nearest) says how the harness brought images to inputSize; initialization
# (kaiming | pytorch | koch) how it drew the starting weights. Neither changes the network's shape.
# The harness's batch norm: PyTorch's defaults (eps 1e-5, momentum 0.1).
BATCH_NORM_EPS = 1e-5


def full_config(config):
    """The configuration with every key, as the harness reads it."""
    unknown = set(config) - set(DEFAULTS) - {"backbone"}
    if unknown:
        raise ValueError(f"model_config has keys the twin does not know: {sorted(unknown)}")
    if config.get("backbone") not in ("vgg16", "koch"):
        raise ValueError(f"model_config backbone {config.get('backbone')!r} is not vgg16 or koch")
    return {**DEFAULTS, **config}


def scaled(channels, width):
    return max(1, int(round(channels * width)))


def vgg_blocks(config):
    if config["blocks"] is not None:
        return config["blocks"]
    return [[scaled(c, config["width"]) for c in block] for block in VGG16_BLOCKS]


def vgg_layout(config):
    """Each block's widths, the padding of its convolutions and whether 2x2 max pooling ends it."""
    blocks = vgg_blocks(config)
    pooling = config["blockPooling"] or [True] * len(blocks)
    padding = config["blockPadding"] or [1] * len(blocks)
    return list(zip(blocks, padding, pooling))


def vgg_final_side(config):
    side = config["inputSize"]
    for widths, padding, pools in vgg_layout(config):
        side += len(widths) * (2 * padding - 2)
        if pools:
            side //= 2
    return side


class VGGBackbone(nn.Module):
    """3x3 convolutions (padding 1, or each block's `blockPadding`), batch norm if asked, ReLU;
    2x2 max pooling after each block (or where `blockPooling` says)."""

    def __init__(self, layout, batch_norm):
        super().__init__()
        layers, channels = [], 1
        for block, padding, pools in layout:
            for width in block:
                layers.append(nn.Conv2d(channels, width, 3, padding=padding))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width, eps=BATCH_NORM_EPS))
                layers.append(nn.ReLU(inplace=False))
                channels = width
            if pools:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return torch.flatten(self.features(x), 1)


class KochBackbone(nn.Module):
    """Koch et al. 2015: 64@10x10, 128@7x7, 128@4x4, 256@4x4 (times width), Linear + sigmoid."""

    def __init__(self, widths, features, final_side):
        super().__init__()
        a, b, c, d = widths
        self.features = nn.Sequential(
            nn.Conv2d(1, a, 10), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(a, b, 7), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(b, c, 4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c, d, 4), nn.ReLU())
        self.fc = nn.Linear(d * final_side * final_side, features)

    def forward(self, x):
        return torch.sigmoid(self.fc(torch.flatten(self.features(x), 1)))


class Siamese(nn.Module):
    """One weight-shared backbone; a pair's logit is head(|f1 - f2|). Without a head, a pair's
    score is the negative squared distance (`similarity: euclidean`) or the cosine (`cosine`)."""

    def __init__(self, backbone, head, similarity="head", classifier=None):
        super().__init__()
        self.backbone, self.head, self.similarity = backbone, head, similarity
        self.classifier = classifier  # over the training classes (model_config classes), or None

    def embed(self, images):
        return self.backbone(images)

    def score(self, f1, f2):
        if self.similarity == "cosine":
            return nn.functional.cosine_similarity(f1, f2, dim=1, eps=1e-30)
        if self.head is None:
            return -((f1 - f2) ** 2).sum(1)
        if self.similarity == "relation":
            return self.head(torch.cat([f1, f2], 1)).squeeze(1)
        return self.head(torch.abs(f1 - f2)).squeeze(1)

    def forward(self, left, right):
        features = self.backbone(torch.cat([left, right], 0))
        f1, f2 = features.chunk(2, 0)
        return self.score(f1, f2)


class Ensemble(nn.Module):
    """Networks of one configuration; a pair's logit is the mean of the members' logits."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def embed(self, images):
        """The members' feature vectors back to back, as the harness's scorer keeps them."""
        return torch.cat([m.embed(images) for m in self.members], 1)

    def score(self, f1, f2):
        n = f1.shape[1] // len(self.members)
        logits = [m.score(f1[:, i * n:(i + 1) * n], f2[:, i * n:(i + 1) * n]) for i, m in enumerate(self.members)]
        return torch.stack(logits, 0).mean(0)

    def forward(self, left, right):
        return torch.stack([m(left, right) for m in self.members], 0).mean(0)


def prototype_scores(queries, support):
    """Negative squared Euclidean distance of each query embedding (Q, F) to each class's
    prototype, the mean of its support embeddings (N, K, F): (Q, N), as the harness scores a
    network of `similarity: euclidean`."""
    prototypes = support.mean(1)
    return -((queries[:, None, :] - prototypes[None, :, :]) ** 2).sum(2)


def prototypical_loss(embeddings, ways, shots, queries):
    """Snell et al.'s loss on embeddings laid out class-major (each class's `shots` support rows,
    then its `queries` query rows): mean cross-entropy of the softmax over negative squared
    distances to the prototypes."""
    x = embeddings.reshape(ways, shots + queries, -1)
    logits = prototype_scores(x[:, shots:].reshape(ways * queries, -1), x[:, :shots])
    labels = torch.arange(ways).repeat_interleave(queries)
    return nn.functional.cross_entropy(logits, labels)


def matching_log_probabilities(queries, support, scale=1.0):
    """Matching networks (Vinyals et al. 2016, no full context embeddings): each query (Q, F)
    attends over the support embeddings (N, K, F) with a softmax of cosines; the log of the
    attention on each class: (Q, N), as the harness scores a network of `similarity: cosine`."""
    ways, shots, _ = support.shape
    flat = support.reshape(ways * shots, -1)
    cosines = nn.functional.cosine_similarity(queries[:, None, :], flat[None, :, :], dim=2, eps=1e-30)
    attention = torch.log_softmax(scale * cosines, 1).reshape(-1, ways, shots)
    return torch.logsumexp(attention, 2)


def matching_loss(embeddings, ways, shots, queries, scale=1.0):
    """Mean of -log p(true class) over an episode's queries, embeddings class-major as in
    `prototypical_loss`; `scale` multiplies the cosines in the softmax (10 for the harness's
    `matching-scaled`)."""
    x = embeddings.reshape(ways, shots + queries, -1)
    log_p = matching_log_probabilities(x[:, shots:].reshape(ways * queries, -1), x[:, :shots], scale)
    labels = torch.arange(ways).repeat_interleave(queries)
    return nn.functional.nll_loss(log_p, labels)


def relation_scores(model, queries, support):
    """Relation networks (Sung et al. 2018, as the harness runs them): the module's logit for each
    query (Q, F) against each class's mean support embedding (N, K, F): (Q, N). `model` is the
    network (or an ensemble: the members' mean logit)."""
    means = support.mean(1)
    q, n = queries.shape[0], means.shape[0]
    return model.score(queries.repeat_interleave(n, 0), means.repeat(q, 1)).reshape(q, n)


def relation_loss(model, images, ways, shots, queries):
    """The relation network's training loss on one episode (images class-major, as in
    `prototypical_loss`): mean squared error of sigmoid(logit) against one-hot over every
    (query, class) pair."""
    x = model.embed(images).reshape(ways, shots + queries, -1)
    logits = relation_scores(model, x[:, shots:].reshape(ways * queries, -1), x[:, :shots])
    target = nn.functional.one_hot(torch.arange(ways).repeat_interleave(queries), ways).to(logits.dtype)
    return nn.functional.mse_loss(torch.sigmoid(logits), target)


# The fine-tuning baseline's fit (Sources/Experiments/Methods/FineTuning.swift): weight decay,
# full-batch gradient steps, power iterations.
FINETUNE_WEIGHT_DECAY, FINETUNE_STEPS, FINETUNE_POWER_ITERATIONS = 1e-3, 300, 30


def finetune_scores(queries, support):
    """The fine-tuning baseline's scores (Chen et al. 2019's "Baseline", as the harness fits it):
    multinomial logistic regression on the support embeddings (N, K, F) with a bias, from zero,
    mean cross-entropy + (1e-3 / 2) |W|^2, 300 full-batch gradient steps of size
    1 / (lambda_max / 2 + 1e-3), lambda_max of the rows' mean outer product (bias 1 appended) by
    30 power iterations from the all-ones vector; the queries' (Q, F) logits (Q, N). In float64."""
    ways, shots, _ = support.shape
    x = torch.cat([support.reshape(ways * shots, -1).double(), torch.ones(ways * shots, 1, dtype=torch.float64)], 1)
    labels = torch.arange(ways).repeat_interleave(shots)
    n, width = x.shape
    gram = x.T @ x / n
    v = torch.full((width,), 1 / width ** 0.5, dtype=torch.float64)
    eigenvalue = 0.0
    for _ in range(FINETUNE_POWER_ITERATIONS):
        nxt = gram @ v
        norm = torch.linalg.vector_norm(nxt).item()
        if norm <= 0:
            break
        eigenvalue, v = norm, nxt / norm
    step = 1 / (max(eigenvalue, 1e-12) / 2 + FINETUNE_WEIGHT_DECAY)
    w = torch.zeros(ways, width, dtype=torch.float64)
    onehot = nn.functional.one_hot(labels, ways).double()
    for _ in range(FINETUNE_STEPS):
        gradient = (torch.softmax(x @ w.T, 1) - onehot).T @ x / n
        gradient[:, :-1] += FINETUNE_WEIGHT_DECAY * w[:, :-1]  # the bias does not decay
        w = w - step * gradient
    q = torch.cat([queries.double(), torch.ones(queries.shape[0], 1, dtype=torch.float64)], 1)
    return q @ w.T


# First-order MAML (Sources/Experiments/Methods/MAML.swift): the adaptation's default step size,
# and its steps in a training step and when an episode is scored (`training.adaptation` of the
# run's configuration sets them: `maml_settings`).
MAML_STEP, MAML_TRAINING_STEPS, MAML_SCORING_STEPS = 0.1, 5, 10


def maml_settings(metadata):
    """Each member's (step size, scoring steps), as the harness reads them: from the
    `training.adaptation` of the `experiment_config` its run wrote into the checkpoint
    (`member.<m>.experiment_config` in an ensemble), the defaults where it sets none."""
    members = int(metadata.get("ensemble_members", "0"))
    keys = [f"member.{m}.experiment_config" for m in range(members)] if members >= 2 else ["experiment_config"]
    out = []
    for key in keys:
        adaptation = json.loads(metadata[key]).get("training", {}).get("adaptation", {}) if key in metadata else {}
        out.append((adaptation.get("learningRate", MAML_STEP), adaptation.get("scoringSteps", MAML_SCORING_STEPS)))
    return out


def maml_adapt(model, images, labels, ways, steps, rate=MAML_STEP):
    """First-order MAML's adaptation, as the harness runs it: a copy of the network in training
    mode (batch norm on the batch's statistics, its running estimates updated) with a linear
    classifier over `ways` classes on its embedding, started at zero, moved by `steps` steps of
    plain gradient descent (step `rate`) on the images' mean cross-entropy, every parameter of
    the backbone and the classifier. Returns (copy, weight (ways, F), bias (ways))."""
    import copy

    fast = copy.deepcopy(model)
    fast.train()
    with torch.no_grad():
        features = fast.embed(images[:1]).shape[1] if steps == 0 else None
    weight = bias = None
    if features is not None:
        weight, bias = torch.zeros(ways, features), torch.zeros(ways)
    with torch.enable_grad():
        for _ in range(steps):
            e = fast.embed(images)
            if weight is None:
                weight, bias = torch.zeros(ways, e.shape[1], device=e.device), torch.zeros(ways, device=e.device)
            weight.requires_grad_(True)
            bias.requires_grad_(True)
            loss = nn.functional.cross_entropy(e @ weight.T + bias, labels)
            params = [p for p in fast.parameters()] + [weight, bias]
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    if g is not None:
                        p -= rate * g
            weight, bias = weight.detach(), bias.detach()
    return fast, weight, bias


def maml_loss(model, images, ways, shots, queries, steps=MAML_TRAINING_STEPS, rate=MAML_STEP):
    """First-order MAML's training step on one episode (images class-major, as in
    `prototypical_loss`): adapts a copy to the support images (`steps` steps of `rate`), then
    the queries' mean cross-entropy at the adapted weights (training mode). Its gradients land in
    the copy's parameters, which the first-order step takes for the network's: returns (loss,
    copy)."""
    x = images.reshape(ways, shots + queries, *images.shape[1:])
    support, query = x[:, :shots].reshape(ways * shots, *images.shape[1:]), x[:, shots:].reshape(ways * queries, *images.shape[1:])
    fast, weight, bias = maml_adapt(model, support, torch.arange(ways).repeat_interleave(shots), ways, steps, rate)
    loss = nn.functional.cross_entropy(fast.embed(query) @ weight.T + bias, torch.arange(ways).repeat_interleave(queries))
    return loss, fast


def maml_scores(model, support, labels, queries, ways, settings=None):
    """First-order MAML's class scores of an episode, as the harness scores it: each member (of
    an ensemble, or the network) adapted to the support images (N K, 1, S, S) with their classes
    `labels` as it was trained to be (`settings`: one (step size, scoring steps) per member, from
    `maml_settings`; the defaults without); the queries (Q, 1, S, S) embedded in eval mode with
    the member's own running estimates (inductive); the members' mean log-softmax of the
    classifier's logits: (Q, N)."""
    members = model.members if isinstance(model, Ensemble) else [model]
    settings = settings or [(MAML_STEP, MAML_SCORING_STEPS)] * len(members)
    total = 0
    for member, (rate, steps) in zip(members, settings):
        fast, weight, bias = maml_adapt(member, support, labels, ways, steps, rate)
        with torch.no_grad():
            for (name, mine), theirs in zip(fast.named_buffers(), member.buffers()):
                mine.copy_(theirs)
            fast.eval()
            total = total + torch.log_softmax((fast.embed(queries) @ weight.T + bias).double(), 1)
    return total / len(members)


def classifier_loss(model, images, labels):
    """The fine-tuning baseline's pre-training loss: mean cross-entropy of the classifier over the
    training classes on the embeddings of `images`, each labelled with its class."""
    return nn.functional.cross_entropy(model.classifier(model.embed(images)), labels)


def build(config):
    """A freshly initialised network for a harness model_config (a dict or its JSON)."""
    if isinstance(config, str):
        config = json.loads(config)
    c = full_config(config)
    model = build_without_classifier(c)
    if c["classes"] is not None:
        # Built last, as the harness builds it.
        model.classifier = nn.Linear(feature_count(c), c["classes"])
    return model


def feature_count(c):
    if c["backbone"] == "vgg16":
        side = vgg_final_side(c)
        return vgg_blocks(c)[-1][-1] * side * side
    return scaled(4096, c["width"])


# The relation module's second hidden layer (Sources/Model/ModelConfig.swift, relationWidth).
RELATION_WIDTH = 8


def relation_module(features, hidden):
    """[f1, f2] -> Linear(2F, H) -> BN -> ReLU -> Linear(H, H) -> BN -> ReLU -> Linear(H, 8) -> ReLU -> Linear(8, 1)."""
    return nn.Sequential(nn.Linear(2 * features, hidden), nn.BatchNorm1d(hidden, eps=BATCH_NORM_EPS), nn.ReLU(),
                         nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden, eps=BATCH_NORM_EPS), nn.ReLU(),
                         nn.Linear(hidden, RELATION_WIDTH), nn.ReLU(), nn.Linear(RELATION_WIDTH, 1))


class ConvolutionalRelationModule(nn.Sequential):
    """Sung et al.'s relation module on the two embeddings' feature maps side by side (the joined
    [f1, f2] unflattened to 2C channels): two blocks of Conv2d(3x3, padding 1) -> BN -> ReLU ->
    MaxPool(2), then Linear(H (s/4)^2, 8) -> ReLU -> Linear(8, 1). Indices as the harness's names:
    head.0, head.1, head.4, head.5, head.9, head.11."""

    def __init__(self, channels, side, hidden):
        quarter = side // 2 // 2
        super().__init__(nn.Conv2d(2 * channels, hidden, 3, padding=1), nn.BatchNorm2d(hidden, eps=BATCH_NORM_EPS), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(hidden, hidden, 3, padding=1), nn.BatchNorm2d(hidden, eps=BATCH_NORM_EPS), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(hidden * quarter * quarter, RELATION_WIDTH), nn.ReLU(), nn.Linear(RELATION_WIDTH, 1))
        self.channels, self.side = 2 * channels, side

    def forward(self, joined):
        return super().forward(joined.reshape(joined.shape[0], self.channels, self.side, self.side))


def build_without_classifier(c):
    if c["similarity"] not in ("head", "euclidean", "cosine", "relation"):
        raise ValueError(f"model_config similarity {c['similarity']!r} is not head, euclidean, cosine or relation")
    if c["similarity"] == "relation":
        if c["backbone"] == "vgg16":
            backbone = VGGBackbone(vgg_layout(c), c["batchNorm"])  # built (and initialised) before the head
        else:
            backbone = koch_backbone(c)
        if c["relationModule"] == "convolutional":
            if c["backbone"] != "vgg16":
                raise ValueError("a convolutional relation module needs the vgg16 backbone")
            module = ConvolutionalRelationModule(vgg_blocks(c)[-1][-1], vgg_final_side(c), c["headHidden"])
            return Siamese(backbone, module, "relation")
        return Siamese(backbone, relation_module(feature_count(c), c["headHidden"]), "relation")
    if c["backbone"] == "vgg16" and c["similarity"] != "head":
        return Siamese(VGGBackbone(vgg_layout(c), c["batchNorm"]), None, c["similarity"])
    if c["backbone"] == "vgg16":
        features = feature_count(c)
        hidden = c["headHidden"]
        backbone = VGGBackbone(vgg_layout(c), c["batchNorm"])  # built (and initialised) before the head
        head = [nn.Linear(features, hidden)] + ([nn.ReLU()] if c["headActivation"] == "relu" else []) + [nn.Linear(hidden, 1)]
        return Siamese(backbone, nn.Sequential(*head))
    backbone = koch_backbone(c)
    head = nn.Linear(feature_count(c), 1) if c["similarity"] == "head" else None
    return Siamese(backbone, head, c["similarity"])


def koch_backbone(c):
    if c["batchNorm"] or c["blocks"] is not None or c["blockPooling"] is not None or c["blockPadding"] is not None:
        raise ValueError("koch takes neither batchNorm nor blocks, blockPooling or blockPadding")
    widths = [scaled(w, c["width"]) for w in (64, 128, 128, 256)]
    final_side = ((((c["inputSize"] - 9) // 2 - 6) // 2 - 3) // 2) - 3
    return KochBackbone(widths, feature_count(c), final_side)


def load(path):
    """A harness checkpoint as (model in eval mode, metadata): a Siamese network or an Ensemble."""
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    if "model_config" not in metadata:
        raise ValueError(f"{path}: no model_config in the metadata; is it a oneshot-bench checkpoint?")
    config = json.loads(metadata["model_config"])
    members = int(metadata.get("ensemble_members", "0"))
    model = Ensemble([build(config) for _ in range(members)]) if members >= 2 else build(config)
    # A run's last.safetensors also carries the optimizer's state (`optimizer.*`), which resumes
    # training and is no part of the network.
    state = {k: v for k, v in tensors.items() if not k.endswith("num_batches_tracked") and not k.startswith("optimizer.")}
    expected = model.state_dict()
    for name in expected:
        if name.endswith("num_batches_tracked"):
            state[name] = expected[name]
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ValueError(f"{path} does not match its model_config: missing {missing[:5]}, unexpected {extra[:5]}")
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, metadata


def input_size(metadata):
    return full_config(json.loads(metadata["model_config"]))["inputSize"]


def ink(pixels):
    """8-bit ink intensities (0 paper, 255 ink), shape (N, S, S) or (N, 1, S, S), as the input."""
    x = torch.as_tensor(pixels, dtype=torch.float32) * (1.0 / 255.0)
    return x if x.dim() == 4 else x.unsqueeze(1)
