#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures the Swift ModelTests compare against.

Builds small versions of both networks with the project's PyTorch twin (python/oneshot_twin:
oneshot-bench's parameter names and layouts, with a width multiplier, a block layout and a
smaller input), fixed weights and inputs, and records weights, inputs, embeddings,
logits, loss, every gradient, and the weights after two Adam(W) and two SGD (Nesterov) steps.

    python3 -m venv VENV && VENV/bin/pip install -r python/requirements.txt
    VENV/bin/python Tests/Reference/make_fixtures.py      # writes Tests/ModelTests/Fixtures/*.safetensors
    (ONESHOT_FIXTURES_OUT=DIR writes them elsewhere, e.g. to compare with the committed ones)

CI does not need PyTorch: the fixtures are committed (about 0.3 MB).
"""
import json, os, sys
import torch
import torch.nn as nn
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import oneshot_twin.model as twin  # noqa: E402

OUT = os.environ.get("ONESHOT_FIXTURES_OUT", os.path.join(os.path.dirname(__file__), "..", "ModelTests", "Fixtures"))


def build(name):
    config = {
        "vgg": {"backbone": "vgg16", "inputSize": 16, "width": 1, "batchNorm": False, "blocks": [[4, 4], [8]], "headHidden": 6, "headActivation": "relu"},
        # Channels in multiples of 16, so oneDNN's Winograd kernels accept the 3x3 layers after
        # the first (ModelTests check the Winograd path against these numbers).
        "vgg_wide": {"backbone": "vgg16", "inputSize": 16, "width": 1, "batchNorm": False, "blocks": [[16, 16], [32]], "headHidden": 6, "headActivation": "relu"},
        "vgg_bn": {"backbone": "vgg16", "inputSize": 12, "width": 1, "batchNorm": True, "blocks": [[3], [5]], "headHidden": 7, "headActivation": "none"},
        "koch": {"backbone": "koch", "inputSize": 65, "width": 0.0625, "batchNorm": False, "headHidden": 512, "headActivation": "none"},
    }[name]
    return config, twin.build(config)


def forward(net, x1, x2):
    """Logits and the features of both branches (one backbone pass over both)."""
    features = net.embed(torch.cat([x1, x2], 0))
    f1, f2 = features.chunk(2, 0)
    return net.score(f1, f2), features


def decays(name):
    # Weight decay on conv and linear weights only, as oneshot-bench.
    return name.endswith("weight") and not is_batch_norm(name)


def is_batch_norm(name):
    return False


def make(name, pairs=3, seed=0):
    torch.manual_seed(seed)
    config, net = build(name)
    bn_names = {n for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)}
    global is_batch_norm
    is_batch_norm = lambda p: p.rsplit(".", 1)[0] in bn_names
    with torch.no_grad():
        for n, p in net.named_parameters():
            if n.rsplit(".", 1)[0] in bn_names:
                p.copy_(1 + 0.2 * torch.randn_like(p) if n.endswith("weight") else 0.1 * torch.randn_like(p))
            elif n.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) * (2.0 / fan_in) ** 0.5)
    s = config["inputSize"]
    x1 = torch.rand(pairs, 1, s, s)
    x2 = torch.rand(pairs, 1, s, s)
    labels = torch.tensor([1.0, 0.0, 1.0][:pairs])
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    net.train()
    logits, features = forward(net, x1, x2)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in net.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in net.named_buffers() if not n.endswith("num_batches_tracked")}

    out = {"input.left": x1, "input.right": x2, "input.labels": labels, "output.features": features.detach(),
           "output.logits": logits.detach(), "output.loss": loss.detach().reshape(1)}
    out.update({"weight." + n: w for n, w in weights.items()})
    out.update({"grad." + n: g for n, g in grads.items()})
    out.update({"buffer." + n: b for n, b in buffers.items()})

    for opt_name in ["adam", "sgd"]:
        with torch.no_grad():
            for n, p in net.named_parameters():
                p.copy_(weights[n])
        params_decay = [p for n, p in net.named_parameters() if decays(n)]
        params_plain = [p for n, p in net.named_parameters() if not decays(n)]
        if opt_name == "adam":
            opt = torch.optim.AdamW([{"params": params_decay, "weight_decay": 0.01}, {"params": params_plain, "weight_decay": 0.0}],
                                    lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        else:
            opt = torch.optim.SGD([{"params": params_decay, "weight_decay": 5e-4}, {"params": params_plain, "weight_decay": 0.0}],
                                  lr=1e-2, momentum=0.9, nesterov=True)
        for _ in range(2):  # two steps with the same gradients: exercises the moments
            for n, p in net.named_parameters():
                p.grad = grads[n].clone()
            opt.step()
        out.update({f"{opt_name}.{n}": p.detach().clone() for n, p in net.named_parameters()})

    out = {k: v.contiguous().float() for k, v in out.items()}
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, f"{name}.safetensors")
    save_file(out, path, metadata={"model_config": json.dumps(config), "torch_version": torch.__version__})
    print(f"{path}: {os.path.getsize(path)} bytes, loss {loss.item():.6f}")


def make_prototypical(seed=0, ways=3, shots=2, queries=2):
    """A prototypical network (no head) on one episode: input images class-major, embeddings,
    Snell's loss, every gradient and the batch-norm running estimates after the step."""
    torch.manual_seed(seed)
    config = {"backbone": "vgg16", "inputSize": 12, "width": 1, "batchNorm": True, "blocks": [[3], [5]], "headHidden": 512,
              "headActivation": "none", "similarity": "euclidean"}
    net = twin.build(config)
    with torch.no_grad():
        for n, p in net.named_parameters():
            if ".features.1." in n:
                p.copy_(1 + 0.2 * torch.randn_like(p) if n.endswith("weight") else 0.1 * torch.randn_like(p))
            elif n.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * (2.0 / p[0].numel()) ** 0.5)
    s = config["inputSize"]
    images = torch.rand(ways * (shots + queries), 1, s, s)
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    net.train()
    features = net.embed(images)
    loss = twin.prototypical_loss(features, ways, shots, queries)
    loss.backward()
    out = {"input.images": images, "output.features": features.detach(), "output.loss": loss.detach().reshape(1)}
    out.update({"weight." + n: w for n, w in weights.items()})
    out.update({"grad." + n: p.grad.detach().clone() for n, p in net.named_parameters()})
    out.update({"buffer." + n: b.detach().clone() for n, b in net.named_buffers() if not n.endswith("num_batches_tracked")})
    out = {k: v.contiguous().float() for k, v in out.items()}
    path = os.path.join(OUT, "proto.safetensors")
    save_file(out, path, metadata={"model_config": json.dumps(config), "torch_version": torch.__version__,
                                   "episode": json.dumps({"ways": ways, "shots": shots, "queries": queries})})
    print(f"{path}: {os.path.getsize(path)} bytes, loss {loss.item():.6f}")


def make_matching(seed=0, ways=3, shots=2, queries=2, features=8):
    """Matching networks' loss on one episode's embeddings (class-major, as the harness lays them
    out) and its gradient, for Tests/ExperimentsTests (the method lives in Experiments); the
    backbone's path under a loss on embeddings is the prototypical fixture's."""
    torch.manual_seed(seed)
    # Rounded to float32 first (as stored), then computed in float64, as the Swift loss is.
    embeddings = torch.randn(ways * (shots + queries), features).double().requires_grad_(True)
    loss = twin.matching_loss(embeddings, ways, shots, queries)
    loss.backward()
    x = embeddings.detach().reshape(ways, shots + queries, -1)
    scores = twin.matching_log_probabilities(x[:, shots:].reshape(ways * queries, -1), x[:, :shots])
    out = {"input.embeddings": embeddings.detach(), "output.loss": loss.detach().reshape(1), "grad.embeddings": embeddings.grad.detach(),
           "output.class_scores": scores.detach()}
    # matching-scaled: the cosines x 10 in the softmax.
    scaled = embeddings.detach().clone().requires_grad_(True)
    loss_scaled = twin.matching_loss(scaled, ways, shots, queries, scale=10.0)
    loss_scaled.backward()
    out.update({"output.loss_scaled": loss_scaled.detach().reshape(1), "grad.embeddings_scaled": scaled.grad.detach(),
                "output.class_scores_scaled": twin.matching_log_probabilities(x[:, shots:].reshape(ways * queries, -1), x[:, :shots], 10.0).detach()})
    out = {k: v.contiguous().float() for k, v in out.items()}
    folder = os.environ.get("ONESHOT_FIXTURES_OUT", os.path.join(os.path.dirname(__file__), "..", "ExperimentsTests", "Fixtures"))
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "matching.safetensors")
    save_file(out, path, metadata={"torch_version": torch.__version__, "episode": json.dumps({"ways": ways, "shots": shots, "queries": queries})})
    print(f"{path}: {os.path.getsize(path)} bytes, loss {loss.item():.6f}")


def randomize(net, batch_norms):
    """Weights away from any initialisation's symmetries: batch norms (parameters whose names
    contain one of `batch_norms`) near 1 and 0, biases small, weights He-scaled."""
    with torch.no_grad():
        for n, p in net.named_parameters():
            if p.dim() == 1 and any(b in n or n.startswith(b) for b in batch_norms):
                p.copy_(1 + 0.2 * torch.randn_like(p) if n.endswith("weight") else 0.1 * torch.randn_like(p))
            elif n.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * (2.0 / p[0].numel()) ** 0.5)


def make_finetune(seed=0, images=6, classes=5, ways=3, shots=2, queries=4):
    """The fine-tuning baseline: one pre-training step of a small batch-norm network with a
    classifier over 5 training classes (weights, images, labels, loss and every gradient), and
    the support-set fit's scores on one episode of embeddings, for Tests/ExperimentsTests."""
    torch.manual_seed(seed)
    config = {"backbone": "vgg16", "inputSize": 12, "width": 1, "batchNorm": True, "blocks": [[3], [5]], "headHidden": 512, "headActivation": "none",
              "similarity": "euclidean", "classes": classes}
    net = twin.build(config)
    randomize(net, batch_norms=(".features.1.",))
    x = torch.rand(images, 1, 12, 12)
    labels = torch.tensor([0, 3, 1, 4, 3, 2][:images])
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    net.train()
    loss = twin.classifier_loss(net, x, labels)
    loss.backward()
    out = {"input.images": x, "input.labels": labels.float(), "output.loss": loss.detach().reshape(1)}
    out.update({"weight." + n: w for n, w in weights.items()})
    out.update({"grad." + n: p.grad.detach().clone() for n, p in net.named_parameters()})
    # The fit: float32 embeddings (as stored), non-negative as after ReLU and pooling.
    embeddings = torch.rand(ways * (shots + queries), 8).float()
    e = embeddings.reshape(ways, shots + queries, -1)
    scores = twin.finetune_scores(e[:, shots:].reshape(ways * queries, -1), e[:, :shots])
    out.update({"input.embeddings": embeddings, "output.class_scores": scores})
    save_experiments_fixture("finetune", out, config, {"ways": ways, "shots": shots, "queries": queries}, loss)


def make_relation(seed=0, ways=3, shots=2, queries=2, name="relation"):
    """Relation networks: one training step of a small batch-norm network with a relation module
    (weights, an episode's images, loss and every gradient), and the class scores of the episode's
    queries, for Tests/ExperimentsTests. `relation_conv`: Sung et al.'s convolutional module on an
    embedding that keeps 5x5 maps (an unpadded first block, unpooled last blocks)."""
    torch.manual_seed(seed)
    if name == "relation_conv":
        config = {"backbone": "vgg16", "inputSize": 12, "width": 1, "batchNorm": True, "blocks": [[3], [4], [5]], "blockPooling": [True, False, False],
                  "blockPadding": [0, 1, 1], "relationModule": "convolutional", "headHidden": 6, "headActivation": "none", "similarity": "relation"}
        norms = (".features.1.", ".features.5.", ".features.8.", "head.1.", "head.5.")
    else:
        config = {"backbone": "vgg16", "inputSize": 12, "width": 1, "batchNorm": True, "blocks": [[3], [5]], "headHidden": 6, "headActivation": "none",
                  "similarity": "relation"}
        norms = (".features.1.", "head.1.", "head.4.")
    net = twin.build(config)
    randomize(net, batch_norms=norms)
    x = torch.rand(ways * (shots + queries), 1, 12, 12)
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    net.train()
    loss = twin.relation_loss(net, x, ways, shots, queries)
    loss.backward()
    out = {"input.images": x, "output.loss": loss.detach().reshape(1)}
    out.update({"weight." + n: w for n, w in weights.items()})
    out.update({"grad." + n: p.grad.detach().clone() for n, p in net.named_parameters()})
    # Scores in eval mode (batch norm's running estimates after the one training forward).
    net.eval()
    with torch.no_grad():
        e = net.embed(x).reshape(ways, shots + queries, -1)
        scores = twin.relation_scores(net, e[:, shots:].reshape(ways * queries, -1), e[:, :shots])
    out.update({"output.embeddings": net.embed(x).detach(), "output.class_scores": scores})
    out.update({"buffer." + n: b.detach().clone() for n, b in net.named_buffers() if not n.endswith("num_batches_tracked")})
    save_experiments_fixture(name, out, config, {"ways": ways, "shots": shots, "queries": queries}, loss)


def make_maml(seed=0, ways=3, shots=2, queries=2):
    """First-order MAML: one training step of a small batch-norm network (weights, an episode's
    images, the queries' loss at the adapted weights and its gradients, the adapted running
    estimates), and the episode's class scores after it, for Tests/ExperimentsTests."""
    torch.manual_seed(seed)
    config = {"backbone": "vgg16", "inputSize": 12, "width": 1, "batchNorm": True, "blocks": [[3], [5]], "headHidden": 512, "headActivation": "none",
              "similarity": "euclidean"}
    net = twin.build(config)
    randomize(net, batch_norms=(".features.1.", ".features.5."))
    x = torch.rand(ways * (shots + queries), 1, 12, 12)
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    loss, fast = twin.maml_loss(net, x, ways, shots, queries)
    loss.backward()
    out = {"input.images": x, "output.loss": loss.detach().reshape(1)}
    out.update({"weight." + n: w for n, w in weights.items()})
    out.update({"grad." + n: p.grad.detach().clone() for n, p in fast.named_parameters()})
    # The network after the step: its weights (no optimizer step) and the copy's running estimates.
    with torch.no_grad():
        for (n, b), (_, a) in zip(net.named_buffers(), fast.named_buffers()):
            b.copy_(a)
    out.update({"buffer." + n: b.detach().clone() for n, b in net.named_buffers() if not n.endswith("num_batches_tracked")})
    e = x.reshape(ways, shots + queries, 1, 12, 12)
    support, query = e[:, :shots].reshape(-1, 1, 12, 12), e[:, shots:].reshape(-1, 1, 12, 12)
    scores = twin.maml_scores(net, support, torch.arange(ways).repeat_interleave(shots), query, ways)
    out["output.class_scores"] = scores.detach()
    save_experiments_fixture("maml", out, config, {"ways": ways, "shots": shots, "queries": queries}, loss)


def save_experiments_fixture(name, out, config, episode, loss):
    """Writes Tests/ExperimentsTests/Fixtures/NAME.safetensors (float32 tensors; the model
    configuration, torch's version and the episode in the metadata)."""
    out = {k: v.contiguous().float() for k, v in out.items()}
    folder = os.environ.get("ONESHOT_FIXTURES_OUT", os.path.join(os.path.dirname(__file__), "..", "ExperimentsTests", "Fixtures"))
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.safetensors")
    save_file(out, path, metadata={"model_config": json.dumps(config), "torch_version": torch.__version__, "episode": json.dumps(episode)})
    print(f"{path}: {os.path.getsize(path)} bytes, loss {loss.item():.6f}")


# Koch et al. 2015's optimizer: SGD with each layer's own learning rate, momentum and L2, the
# momentum ramped from 0.5 to each layer's own, the rate decayed by 1% a step here (by epoch in
# their paper). The layers not named take the base settings. Sources/Model/Optimizers (the
# Swift test, PyTorchCrossCheckTests.testLayerwiseSGDMatchesPyTorch, states the same numbers).
LAYERWISE_BASE = {"lr": 0.03, "momentum": 0.7, "weight_decay": 5e-4}
LAYERWISE = {"backbone.features.0": {"lr": 0.05, "momentum": 0.8, "weight_decay": 1e-3},
             "backbone.features.3": {"lr": 0.02, "momentum": 0.3, "weight_decay": 0.0},
             "backbone.fc": {"lr": 0.01, "momentum": 0.9, "weight_decay": 2e-3}}
LAYERWISE_RAMP = {"start": 0.5, "steps": 2}
LAYERWISE_DECAY, LAYERWISE_STEPS = 0.99, 3


def make_layerwise_sgd():
    """Three steps of per-layer SGD (PyTorch's SGD with a parameter group per layer and per
    weight / bias, momentum and rate set before each step) from the committed koch fixture's
    weights and gradients: checks the update rule alone. Writes koch_layerwise.safetensors."""
    from safetensors.torch import load_file
    fixture = load_file(os.path.join(OUT, "koch.safetensors"))
    names = [k[len("weight."):] for k in fixture if k.startswith("weight.")]
    params = {n: torch.nn.Parameter(fixture["weight." + n].clone()) for n in names}
    groups = []
    for n in names:
        layer = n.rsplit(".", 1)[0]
        settings = LAYERWISE.get(layer, LAYERWISE_BASE)
        # L2 on weights only, as oneshot-bench without decayEveryParameter.
        groups.append({"params": [params[n]], "lr": settings["lr"], "momentum": settings["momentum"], "base_lr": settings["lr"],
                       "final_momentum": settings["momentum"], "weight_decay": settings["weight_decay"] if n.endswith("weight") else 0.0})
    opt = torch.optim.SGD(groups, lr=LAYERWISE_BASE["lr"], momentum=0.5, nesterov=False)
    for step in range(LAYERWISE_STEPS):
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * LAYERWISE_DECAY ** step
            group["momentum"] = LAYERWISE_RAMP["start"] + (group["final_momentum"] - LAYERWISE_RAMP["start"]) * min(step / LAYERWISE_RAMP["steps"], 1)
        for n in names:
            params[n].grad = fixture["grad." + n].clone()
        opt.step()
    out = {f"sgd_layers.{n}": params[n].detach().clone().contiguous().float() for n in names}
    path = os.path.join(OUT, "koch_layerwise.safetensors")
    save_file(out, path, metadata={"torch_version": torch.__version__, "layers": json.dumps(LAYERWISE), "base": json.dumps(LAYERWISE_BASE),
                                   "ramp": json.dumps(LAYERWISE_RAMP), "decay": str(LAYERWISE_DECAY), "steps": str(LAYERWISE_STEPS)})
    print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    # With names, only those fixtures (e.g. `make_fixtures.py relation`); without, all of them.
    torch.set_num_threads(1)
    chosen = set(sys.argv[1:])
    for name in ["vgg", "vgg_bn", "koch", "vgg_wide"]:
        if not chosen or name in chosen:
            make(name)
    for name, maker in [("prototypical", make_prototypical), ("matching", make_matching), ("finetune", make_finetune), ("relation", make_relation),
                        ("relation_conv", lambda: make_relation(name="relation_conv")), ("maml", make_maml), ("koch_layerwise", make_layerwise_sgd)]:
        if not chosen or name in chosen:
            maker()
