import Episodes
import Foundation
import Model
import Support

// An experiment file: `experiments/NAME.json`. Each library owns its part (ModelConfig in
// Model, EpisodeSpec and AffineAugmentation in Episodes); the harness owns the rest. Decoding
// is strict: an unknown or misspelt key, a wrong type or an impossible value is an error that
// names the file and the key path, before any work and before anything is written.

/// The whole experiment.
package struct ExperimentConfig: Codable, Equatable {
  /// Experiment name, the key runs are grouped by.
  package var name: String
  /// What it is and how long it takes.
  package var description: String
  /// Seed of weight initialisation, training pairs and augmentation.
  package var seed: UInt64
  /// Threads for oneDNN and the parallel loops.
  package var threads: Int
  /// Where the data comes from.
  package var data: DataConfig
  /// The network.
  package var model: ModelConfig
  /// How it is trained; nil for a file that only evaluates checkpoints (`run --eval-only`).
  package var training: TrainingConfig?
  /// What it is scored on.
  package var evaluation: [ProtocolConfig]
  /// An outside scorer's command (`run --eval-only` scores it instead of a checkpoint; see
  /// docs/SCORER_PROTOCOL.md); `--scorer` replaces it.
  package var scorer: String? = nil

  package enum CodingKeys: String, CodingKey, CaseIterable { case name, description, seed, threads, data, model, training, evaluation, scorer }

  package init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    name = try c.decode(String.self, forKey: .name)
    description = try c.decodeIfPresent(String.self, forKey: .description) ?? ""
    seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? 0
    threads = try c.decodeIfPresent(Int.self, forKey: .threads) ?? 2
    data = try c.decodeIfPresent(DataConfig.self, forKey: .data) ?? DataConfig()
    model = try c.decode(ModelConfig.self, forKey: .model)
    training = try c.decodeIfPresent(TrainingConfig.self, forKey: .training)
    evaluation = try c.decodeIfPresent([ProtocolConfig].self, forKey: .evaluation) ?? [ProtocolConfig(protocolKind: .lake20)]
    scorer = try c.decodeIfPresent(String.self, forKey: .scorer)
  }

  /// Encodes every key; an encoder whose `userInfo` has `identityOnly` leaves out `threads`
  /// (see `hash`).
  package func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(name, forKey: .name)
    try c.encode(description, forKey: .description)
    try c.encode(seed, forKey: .seed)
    if encoder.userInfo[ExperimentConfig.identityOnly] == nil { try c.encode(threads, forKey: .threads) }
    try c.encode(data, forKey: .data)
    try c.encode(model, forKey: .model)
    try c.encodeIfPresent(training, forKey: .training)
    try c.encode(evaluation, forKey: .evaluation)
    try c.encodeIfPresent(scorer, forKey: .scorer)
  }

  /// The `userInfo` key of an encoding of what identifies an experiment.
  package static let identityOnly = CodingUserInfoKey(rawValue: "oneshot.identityOnly")!

  /// Value problems as (key path, what is allowed); each part checks its own.
  package func problems() -> [ConfigProblem] {
    var out: [ConfigProblem] = []
    if name.isEmpty || name.count > 200 || name.contains(where: { $0 == "/" }) || name.unicodeScalars.contains(where: isControl) {
      out.append(("name", "a non-empty name of at most 200 characters, without '/' or control characters"))
    }
    if !(1...256).contains(threads) { out.append(("threads", "between 1 and 256; got \(threads)")) }
    out += nested("model", model.problems())
    out += nested("data", data.problems())
    out += nested("training", training?.problems() ?? [])
    if evaluation.isEmpty { out.append(("evaluation", "at least one protocol")) }
    for (i, item) in evaluation.enumerated() { out += nested("evaluation[\(i)]", item.problems()) }
    if let training, model.problems().isEmpty {
      let images = training.imagesPerStep
      // Each activation lives as output, cache and gradient during a step: ~12 bytes a float.
      let bytes = Double(images) * Double(model.activationFloatsPerImage) * 12
      if bytes > Limits.trainingActivationBytes {
        // The key that sets a step's images: the episode's shape, or the pairs (issue #45, cause R).
        let (key, lower) = training.method.trainsOnEpisodes ? ("training.episode", "lower its ways, shots or queries") : ("training.pairsPerStep", "lower pairsPerStep")
        out.append((key, String(format: "a step of %d images of this network needs about %.0f GB of activations; at most %.0f GB fit: %@", images, bytes / 1e9, Limits.trainingActivationBytes / 1e9, lower)))
      }
    }
    out += methodProblems()
    out += layerSettingsProblems()
    if let scorer, scorer.trimmingCharacters(in: .whitespaces).isEmpty || scorer.count > 4096 || scorer.unicodeScalars.contains(where: isControl) {
      out.append(("scorer", "a shell command of at most 4096 characters on one line, e.g. \"python3 examples/scorers/pixel_scorer.py\""))
    }
    if scorer != nil, let index = evaluation.firstIndex(where: { $0.augmentedCopies != nil }) {
      out.append(("evaluation[\(index)].augmentedCopies", "an outside scorer embeds the images it is sent; averaging over distorted copies is for the harness's own network: remove the key, or the scorer"))
    }
    let names = evaluation.map(\.name)
    if Set(names).count != names.count {
      // Only the repeated names, a few of them: a file of 100,000 copies of one protocol gets a short line.
      var seen = Set<String>(), repeated: [String] = []
      for name in names where !seen.insert(name).inserted && !repeated.contains(name) { repeated.append(name) }
      let shown = repeated.prefix(3).map { repeatedName in "\(repeatedName) (\(names.filter { $0 == repeatedName }.count) times)" }.joined(separator: ", ") + (repeated.count > 3 ? " and \(repeated.count - 3) more" : "")
      out.append(("evaluation", "protocol names must be distinct (give each a \"name\"); repeated: \(shown)"))
    }
    return out
  }
}

extension ExperimentConfig {
  /// Each layer given its own optimizer settings must be a layer of this network: a misspelt
  /// name would otherwise train that layer at the base settings without a word. (Builds the
  /// network once to read its parameters' names; only files with `optimizer.layers` pay it.)
  func layerSettingsProblems() -> [ConfigProblem] {
    guard let training, case .sgd(_, _, _, _, let layers?, _) = training.optimizer.config, !layers.isEmpty, model.problems().isEmpty else { return [] }
    let names = EmbeddingNetwork(config: model, seed: 0).store.parameters.map(\.name)
    let unknown = training.optimizer.config.unknownLayers(among: names)
    guard !unknown.isEmpty else { return [] }
    var known: [String] = []
    for name in names {
      let layer = String(name[..<(name.lastIndex(of: ".") ?? name.endIndex)])
      if !known.contains(layer) { known.append(layer) }
    }
    return unknown.map { layer in
      let index = layers.firstIndex { $0.layer == layer } ?? 0
      return ("training.optimizer.layers[\(index)].layer", "this network has no layer \(layer); its layers are \(known.joined(separator: ", "))")
    }
  }

  /// The objective must fit the network (a prototypical network has no head to score pairs
  /// with, a head is trained on pairs), and Lake's runs are no test of a network trained on the
  /// Vinyals split (its training characters include evaluation alphabets).
  func methodProblems() -> [ConfigProblem] {
    var out: [ConfigProblem] = []
    if let method = training?.method, method.similarity != model.similarity {
      // Two different ways of comparing embeddings (or a relation module on either side): the
      // objective needs its own. Else one side is a head: trained on pairs, or not there to train.
      if method.similarity == .relation || model.similarity == .relation || (method.similarity != .head && model.similarity != .head) {
        let fitting = FewShotMethods.all.filter { $0.similarity == model.similarity }.map { "\"\($0.name)\"" }.joined(separator: " or ")
        out.append(("model.similarity", "the \(method.name) objective needs \"similarity\": \"\(method.similarity.rawValue)\"; a network with \"\(model.similarity.rawValue)\" trains with \(fitting)"))
      } else if model.similarity == .head {
        out.append(("model.similarity", "the \(method.name) objective trains an embedding without a head: set \"similarity\": \"\(method.similarity.rawValue)\""))
      } else {
        let fitting = FewShotMethods.all.filter { $0.similarity == model.similarity }.map { "\"\($0.name)\"" }.joined(separator: " or ")
        out.append(("training.objective", "a network with \"similarity\": \"\(model.similarity.rawValue)\" has no head to train on pairs: set \"objective\": \(fitting) (or remove model.similarity)"))
      }
    }
    if let method = training?.method, method.scoresImages, let index = evaluation.firstIndex(where: { $0.augmentedCopies != nil }) {
      out.append(("evaluation[\(index)].augmentedCopies", "the \(method.name) objective adapts the network to each episode's images, not to averaged embeddings: remove the key"))
    }
    if let method = training?.method {
      if method.classifiesTrainingClasses && model.classes == nil {
        out.append(("model.classes", "the \(method.name) objective pre-trains a classifier over the training classes: set \"classes\" to how many there are (4112 for data.split vinyals; a run with another number says the right one)"))
      } else if !method.classifiesTrainingClasses && model.classes != nil {
        let classifying = FewShotMethods.all.filter { $0.classifiesTrainingClasses }.map { "\"\($0.name)\"" }.joined(separator: " or ")
        out.append(("model.classes", "only the \(classifying) objective trains a classifier over the training classes; remove \"classes\" for the \(method.name) objective"))
      }
    }
    if data.split.isVinyals, let i = evaluation.firstIndex(where: { $0.protocolKind == .lake20 }) {
      out.append(
        ("evaluation[\(i)]", "Lake's runs draw on Atlantean, Ge_ez, Glagolitic and Gurmukhi, whose characters the Vinyals split trains on: score Lake's runs with a network trained on data.split lake"))
    }
    return out
  }
}

/// Control characters (NUL, newlines, escapes...) are refused in names: they would truncate,
/// split or rewrite what a terminal, a CSV file or a database shows.
package func isControl(_ scalar: Unicode.Scalar) -> Bool { scalar.properties.generalCategory == .control }

/// Upper bounds of an experiment's values: what fits in memory and time on a 24 GB, 2-core
/// machine, checked before any run row is written (experiments/README.md lists them).
package enum Limits {
  package static let steps = 100_000_000
  package static let pairs = 1_000_000_000_000
  package static let pairsPerStep = 8192
  package static let validationEpisodes = 100_000
  package static let episodes = 1_000_000
  /// The largest first episode index `episodes --start` takes (start + count stays far from overflow).
  package static let episodeStart = 1_000_000_000_000
  /// Images a protocol scores (episodes x ways x (shots + queries)).
  package static let imagesScored = 200_000_000
  package static let trainingActivationBytes = 16e9
  /// Distorted copies of each image a protocol averages over (`augmentedCopies`).
  package static let augmentedCopies = 64
}

/// The data section.
package struct DataConfig: Codable, Equatable {
  /// Folder of the Omniglot zips (or, with `custom`, a ROOT/<group>/<class>/*.png folder).
  package var path: String = OmniglotDataset.defaultRoot
  /// Background alphabets held out for model selection.
  package var validationAlphabets: [String] = OmniglotAlphabets.defaultValidation
  /// Fraction of negative pairs drawn from the anchor's alphabet.
  package var sameAlphabetNegatives: Double = 0
  /// A folder of your own images, `ROOT/<group>/<class>/*.png|*.jpg`, to train on instead of
  /// Omniglot's background split (groups play alphabets); nil: Omniglot.
  package var folder: String? = nil
  /// With `folder`: the groups held out for validation (model selection).
  package var validationGroups: [String]? = nil
  /// With `folder`, instead of `validationGroups`: the share of groups held out, chosen from the
  /// seed (a folder with one group holds out that share of its classes); by default 0.15.
  package var validationFraction: Double? = nil

  /// Which Omniglot protocol the splits follow: `lake` (the default: training on the background
  /// alphabets, testing on the evaluation alphabets, as Lake et al.) or `vinyals` (the
  /// literature's split of Vinyals et al. as Snell et al. distribute it: characters pooled,
  /// rotations as classes, 1,028 / 172 / 423 training / validation / test characters; see
  /// `VinyalsSplit`). With `vinyals`, training draws from its training classes, validation
  /// (model selection and the `validation` protocols) from its validation classes, and the
  /// `evaluation` protocols from its test classes.
  package var split: OmniglotProtocol = .lake

  package enum OmniglotProtocol: String, Codable, CaseIterable {
    case lake, vinyals
    /// The Vinyals split with its training and validation characters trained on together, as
    /// Snell et al. trained their final models (after choosing the number of episodes on the
    /// validation characters). Validation then scores characters it trains on: give such a run
    /// one validation, at its last step (its best checkpoint is its last).
    case vinyalsTrainval = "vinyals-trainval"

    var isVinyals: Bool { self != .lake }
  }

  /// The share held out when a folder names neither `validationGroups` nor `validationFraction`.
  package static let defaultValidationFraction = 0.15

  package enum CodingKeys: String, CodingKey, CaseIterable { case path, validationAlphabets, sameAlphabetNegatives, folder, validationGroups, validationFraction, split }

  package init() {}

  package init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    path = try c.decodeIfPresent(String.self, forKey: .path) ?? OmniglotDataset.defaultRoot
    validationAlphabets = try c.decodeIfPresent([String].self, forKey: .validationAlphabets) ?? OmniglotAlphabets.defaultValidation
    sameAlphabetNegatives = try c.decodeIfPresent(Double.self, forKey: .sameAlphabetNegatives) ?? 0
    folder = try c.decodeIfPresent(String.self, forKey: .folder)
    validationGroups = try c.decodeIfPresent([String].self, forKey: .validationGroups)
    validationFraction = try c.decodeIfPresent(Double.self, forKey: .validationFraction)
    split = try c.decodeIfPresent(OmniglotProtocol.self, forKey: .split) ?? .lake
  }

  /// Every key; `split` only when not the default `lake`, so that configuration hashes recorded
  /// before the key existed stay what they were.
  package func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(path, forKey: .path)
    try c.encode(validationAlphabets, forKey: .validationAlphabets)
    try c.encode(sameAlphabetNegatives, forKey: .sameAlphabetNegatives)
    try c.encodeIfPresent(folder, forKey: .folder)
    try c.encodeIfPresent(validationGroups, forKey: .validationGroups)
    try c.encodeIfPresent(validationFraction, forKey: .validationFraction)
    if split != .lake { try c.encode(split, forKey: .split) }
  }

  package func problems() -> [ConfigProblem] {
    var out: [ConfigProblem] = []
    if validationAlphabets.isEmpty { out.append(("validationAlphabets", "at least one background alphabet for model selection")) }
    if !(0...1).contains(sameAlphabetNegatives) { out.append(("sameAlphabetNegatives", "within 0...1; got \(sameAlphabetNegatives)")) }
    if let folder {
      if folder.isEmpty { out.append(("folder", "a folder path (ROOT/<group>/<class>/*.png)")) }
      if validationAlphabets != OmniglotAlphabets.defaultValidation {
        out.append(("validationAlphabets", "names Omniglot alphabets; with data.folder, hold out groups with validationGroups or validationFraction"))
      }
      if validationGroups != nil && validationFraction != nil { out.append(("validationFraction", "give validationGroups or validationFraction, not both")) }
      if let groups = validationGroups, groups.isEmpty || Set(groups).count != groups.count {
        out.append(("validationGroups", "at least one group, each once; got \(groups)"))
      }
      if let fraction = validationFraction, !(fraction > 0 && fraction < 1) { out.append(("validationFraction", "between 0 and 1 (exclusive); got \(fraction)")) }
    } else if validationGroups != nil || validationFraction != nil {
      out.append((validationGroups != nil ? "validationGroups" : "validationFraction", "only with data.folder (Omniglot's are validationAlphabets)"))
    }
    if split.isVinyals {
      if folder != nil { out.append(("split", "vinyals is a split of Omniglot; a run trains on it or on data.folder, not both")) }
      if validationAlphabets != OmniglotAlphabets.defaultValidation {
        out.append(("validationAlphabets", "the Vinyals split has its own validation characters (splits/vinyals/val.txt); remove validationAlphabets"))
      }
    }
    return out
  }
}

/// The training section.
package struct TrainingConfig: Codable, Equatable {
  /// Optimizer steps (one batch each).
  package var steps: Int
  /// Pairs per step (even: half same, half different).
  package var pairsPerStep: Int
  /// The optimizer and its base learning rate.
  package var optimizer: OptimizerSettings
  /// The learning-rate schedule.
  package var schedule: LearningRateSchedule
  /// Koch et al.'s affine distortions, or nil for none.
  package var augmentation: AffineAugmentation?
  /// Model selection on held-out background alphabets.
  package var validation: ValidationSettings
  /// Stop after this many validations without improvement (0: never stop early).
  package var patience: Int
  /// Log the training loss every this many steps.
  package var logEvery: Int
  /// `independent`: every pair has its own two images (2 x pairsPerStep images a step);
  /// `groups`: groups of 2 characters x 2 drawers, each image in two pairs (pairsPerStep images);
  /// `batch`: groups of 2 characters x 4 drawers scored within the batch, every same-character
  /// pair and as many different ones, 24 pairs from 8 images (pairsPerStep / 3 images).
  package var pairing: Pairing

  /// The few-shot method a step trains (`FewShotMethods`, one file each under Methods/):
  /// `pairs` (same/different pairs through the head, binary cross-entropy; the default) or
  /// `prototypical` (Snell et al.'s episodes), and any method added there. Recorded in every
  /// checkpoint.
  package var objective: String = SiamesePairs.name
  /// The method `objective` names.
  package var method: any FewShotMethod.Type { FewShotMethods.named(objective) ?? SiamesePairs.self }
  /// The training episode of the prototypical objective (one per step, drawn from the training
  /// classes by the counter-based sampler: the same episodes on every machine and on resume).
  package var episode: EpisodeSpec? = nil

  /// Validation accuracies to time (each in (0, 1]): the first validation at or above each is
  /// recorded with the training time, wall time, pairs and images until then (time to accuracy).
  package var targets: [Double]? = nil
  /// Stop training at the first validation that reaches the highest target (then evaluate).
  package var stopAtTarget = false
  /// With a decay in (0, 1), an exponential moving average of the weights (and batch norm's
  /// running estimates) is kept over the steps (`WeightAverage`, "model EMA"), and it is what
  /// is validated, kept as the best checkpoint and scored; training continues on the current
  /// weights. Nil: none. 0.999 averages over about the last 1,000 steps.
  package var emaDecay: Double? = nil
  /// MAML's adaptation to each episode (`AdaptationSettings`: step size, steps in training and
  /// when scoring); nil: its defaults. Only for a method that adapts to episodes.
  package var adaptation: AdaptationSettings? = nil

  /// Images one training step embeds (as the method draws them).
  package var imagesPerStep: Int { method.imagesPerStep(self) }
  /// The convolutions' arithmetic while training and validating: fp32, bf16 (bf16 inputs with
  /// float accumulation; weights, optimizer state, batch norm and the head stay fp32, as in
  /// PyTorch's bf16 autocast) or auto (whichever this machine runs faster, measured at the
  /// start and cached; see PrecisionProbe). Evaluation is always fp32.
  package var precision: PrecisionSetting
  /// The convolutions' algorithm while training and validating: direct (oneDNN's direct
  /// primitives, one arithmetic on every machine) or auto (per layer and direction, direct or
  /// Winograd, whichever this machine runs faster: timed at the first use of each shape,
  /// printed and recorded as the tag `convolutions.chosen`). Winograd exists for fp32 3x3
  /// convolutions only. Evaluation always runs direct.
  package var convolutions: ConvolutionsSetting
  /// Batch norm (with ReLU) and the max pooling after it while training: auto (fused or as two
  /// oneDNN primitives, whichever this machine runs faster, timed with the precision probe and
  /// recorded as the tag `fusion.resolved`), fused, or unfused (to pin a run's arithmetic).
  package var fusion: FusionSetting = .auto

  package enum Pairing: String, Codable, CaseIterable { case independent, groups, batch }

  package enum CodingKeys: String, CodingKey, CaseIterable {
    case steps, pairs, pairsPerStep, optimizer, schedule, augmentation, validation, patience, logEvery, pairing, precision, convolutions, fusion, objective, episode, targets,
      stopAtTarget, emaDecay, adaptation
  }

  package init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    pairsPerStep = try c.decodeIfPresent(Int.self, forKey: .pairsPerStep) ?? 32
    let steps = try c.decodeIfPresent(Int.self, forKey: .steps)
    let pairs = try c.decodeIfPresent(Int.self, forKey: .pairs)
    switch (steps, pairs) {
    case (let s?, nil): self.steps = s
    case (nil, let p?):
      guard (0...Limits.pairs).contains(p) else {
        throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath + [CodingKeys.pairs], debugDescription: "between 0 and \(Limits.pairs); got \(p)"))
      }
      self.steps = pairsPerStep > 0 ? (p + pairsPerStep - 1) / pairsPerStep : 0
    default:
      throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath + [CodingKeys.steps], debugDescription: "give the budget as exactly one of \"steps\" or \"pairs\""))
    }
    optimizer = try c.decode(OptimizerSettings.self, forKey: .optimizer)
    schedule = try c.decodeIfPresent(LearningRateSchedule.self, forKey: .schedule) ?? .constant
    augmentation = try c.decodeIfPresent(AffineAugmentation.self, forKey: .augmentation)
    validation = try c.decodeIfPresent(ValidationSettings.self, forKey: .validation) ?? ValidationSettings()
    patience = try c.decodeIfPresent(Int.self, forKey: .patience) ?? 0
    logEvery = try c.decodeIfPresent(Int.self, forKey: .logEvery) ?? 20
    pairing = try c.decodeIfPresent(Pairing.self, forKey: .pairing) ?? .independent
    precision = try c.decodeIfPresent(PrecisionSetting.self, forKey: .precision) ?? .fp32
    convolutions = try c.decodeIfPresent(ConvolutionsSetting.self, forKey: .convolutions) ?? .direct
    fusion = try c.decodeIfPresent(FusionSetting.self, forKey: .fusion) ?? .auto
    objective = try c.decodeIfPresent(String.self, forKey: .objective) ?? SiamesePairs.name
    guard FewShotMethods.named(objective) != nil else {
      throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath + [CodingKeys.objective], debugDescription: "one of \(FewShotMethods.names.joined(separator: ", ")); got \(objective)"))
    }
    episode = try c.decodeIfPresent(EpisodeSpec.self, forKey: .episode)
    targets = try c.decodeIfPresent([Double].self, forKey: .targets)
    stopAtTarget = try c.decodeIfPresent(Bool.self, forKey: .stopAtTarget) ?? false
    emaDecay = try c.decodeIfPresent(Double.self, forKey: .emaDecay)
    adaptation = try c.decodeIfPresent(AdaptationSettings.self, forKey: .adaptation)
    if method.trainsOnEpisodes && pairs != nil {
      throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath + [CodingKeys.pairs], debugDescription: "the \(objective) objective trains on episodes, not pairs: give the budget as \"steps\" (one episode each)"))
    }
  }

  package func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(steps, forKey: .steps)
    try c.encode(pairsPerStep, forKey: .pairsPerStep)
    try c.encode(optimizer, forKey: .optimizer)
    try c.encode(schedule, forKey: .schedule)
    try c.encodeIfPresent(augmentation, forKey: .augmentation)
    try c.encode(validation, forKey: .validation)
    try c.encode(patience, forKey: .patience)
    try c.encode(logEvery, forKey: .logEvery)
    try c.encode(pairing, forKey: .pairing)
    // Written only when not the default, so the configuration hashes of fp32 runs recorded
    // before the key existed stay what they were.
    if precision != .fp32 { try c.encode(precision, forKey: .precision) }
    if convolutions != .direct { try c.encode(convolutions, forKey: .convolutions) }
    if fusion != .auto { try c.encode(fusion, forKey: .fusion) }
    if objective != SiamesePairs.name { try c.encode(objective, forKey: .objective) }
    try c.encodeIfPresent(episode, forKey: .episode)
    try c.encodeIfPresent(targets, forKey: .targets)
    if stopAtTarget { try c.encode(stopAtTarget, forKey: .stopAtTarget) }
    try c.encodeIfPresent(emaDecay, forKey: .emaDecay)
    try c.encodeIfPresent(adaptation, forKey: .adaptation)
  }

  package func problems() -> [ConfigProblem] {
    var out: [ConfigProblem] = []
    if !(1...Limits.steps).contains(steps) { out.append(("steps", "between 1 and \(Limits.steps); got \(steps)")) }
    // What the method's own settings must be (its pairs, its training episode).
    out += method.problems(self)
    if let targets {
      if targets.isEmpty || targets.count > 20 { out.append(("targets", "1 to 20 validation accuracies, e.g. [0.80, 0.85]; got \(targets.count)")) }
      if let bad = targets.first(where: { !($0 > 0 && $0 <= 1) }) { out.append(("targets", "validation accuracies in (0, 1], e.g. 0.85 for 85%; got \(bad)")) }
      if Set(targets).count != targets.count { out.append(("targets", "each target once; got \(targets)")) }
    }
    if let emaDecay, !(emaDecay > 0 && emaDecay < 1) {
      out.append(("emaDecay", "the moving average's decay, in (0, 1), e.g. 0.999 (about the last 1,000 steps); got \(emaDecay); remove the key for no average"))
    }
    if adaptation != nil && !method.scoresImages {
      let adapting = FewShotMethods.all.filter { $0.scoresImages }.map { $0.name }.joined(separator: ", ")
      out.append(("adaptation", "the \(objective) objective does not adapt its network to each episode (\(adapting) does); remove the key"))
    }
    if stopAtTarget && (targets ?? []).isEmpty { out.append(("stopAtTarget", "stops at the highest of training.targets: name at least one target")) }
    out += nested("optimizer", optimizer.problems())
    out += nested("schedule", schedule.problems(steps: steps))
    out += nested("augmentation", augmentation?.problems() ?? [])
    out += nested("validation", validation.problems())
    if patience < 0 { out.append(("patience", "0 (never stop early) or more validations; got \(patience)")) }
    if logEvery < 1 { out.append(("logEvery", "at least 1; got \(logEvery)")) }
    return out
  }
}

/// Validation during training: episodes from the held-out background alphabets.
package struct ValidationSettings: Codable, Equatable {
  /// Validate every this many steps (and at the end).
  package var every: Int = 500
  /// Episodes per validation.
  package var episodes: Int = 100
  /// What a validation episode is.
  package var spec: EpisodeSpec = EpisodeSpec(ways: 20, shots: 1, queries: 1, alphabetMode: .within, disjointDrawers: true)
  /// Seed of the validation episodes (the same episodes at every validation).
  package var seed: UInt64 = 1

  package enum CodingKeys: String, CodingKey, CaseIterable { case every, episodes, spec, seed }

  package init() {}

  package init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let defaults = ValidationSettings()
    every = try c.decodeIfPresent(Int.self, forKey: .every) ?? defaults.every
    episodes = try c.decodeIfPresent(Int.self, forKey: .episodes) ?? defaults.episodes
    spec = try c.decodeIfPresent(EpisodeSpec.self, forKey: .spec) ?? defaults.spec
    seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? defaults.seed
  }

  package func problems() -> [ConfigProblem] {
    var out: [ConfigProblem] = []
    if every < 1 { out.append(("every", "at least 1 step")) }
    if !(1...Limits.validationEpisodes).contains(episodes) { out.append(("episodes", "between 1 and \(Limits.validationEpisodes); got \(episodes)")) }
    out += nested("spec", spec.problems())
    return out
  }
}

/// One evaluation protocol: Lake's 20 runs, or sampled N-way K-shot episodes.
package struct ProtocolConfig: Codable, Equatable {
  package enum Kind: String, Codable, CaseIterable { case lake20, episodes }
  package var protocolKind: Kind
  /// Split of sampled episodes: `evaluation` (the test set) or `validation`.
  package var split: String = "evaluation"
  /// With split `folder`: the folder of the user's own images, ROOT/<group>/<class>/*.png.
  package var path: String?
  package var episodes: Int = 1000
  package var spec: EpisodeSpec = EpisodeSpec(ways: 20, shots: 1, queries: 1)
  package var seed: UInt64 = 0
  package var customName: String?
  /// Test-time averaging: each image's embedding is the mean of its own and this many distorted
  /// copies' (Koch et al.'s affine distortions, each copy a pure function of the image's pixels and
  /// its number, so every machine and every episode sees the same copies). Absent: none.
  package var augmentedCopies: Int?

  package enum CodingKeys: String, CodingKey, CaseIterable {
    case protocolKind = "protocol"
    case split, path, episodes, spec, seed
    case customName = "name"
    case augmentedCopies
  }

  package init(protocolKind: Kind) { self.protocolKind = protocolKind }

  package init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    protocolKind = try c.decode(Kind.self, forKey: .protocolKind)
    let defaults = ProtocolConfig(protocolKind: protocolKind)
    split = try c.decodeIfPresent(String.self, forKey: .split) ?? defaults.split
    path = try c.decodeIfPresent(String.self, forKey: .path)
    episodes = try c.decodeIfPresent(Int.self, forKey: .episodes) ?? defaults.episodes
    spec = try c.decodeIfPresent(EpisodeSpec.self, forKey: .spec) ?? defaults.spec
    seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? defaults.seed
    customName = try c.decodeIfPresent(String.self, forKey: .customName)
    augmentedCopies = try c.decodeIfPresent(Int.self, forKey: .augmentedCopies)
  }

  /// The protocol's name in results: `lake20`, or e.g. `evaluation-20way-1shot-within`.
  package var name: String {
    if let customName { return customName }
    switch protocolKind {
    case .lake20: return "lake20"
    case .episodes:
      return "\(split)-\(spec.ways)way-\(spec.shots)shot-\(spec.alphabetMode.rawValue)\(spec.disjointDrawers ? "-disjoint" : "")"
    }
  }

  package func problems() -> [ConfigProblem] {
    var out: [ConfigProblem] = []
    if let customName, customName.isEmpty || customName.count > 200 || customName.unicodeScalars.contains(where: isControl) {
      out.append(("name", "a non-empty protocol name of at most 200 characters, without control characters"))
    }
    if let copies = augmentedCopies, !(1...Limits.augmentedCopies).contains(copies) {
      out.append(("augmentedCopies", "between 1 and \(Limits.augmentedCopies) distorted copies of each image (remove the key for none); got \(copies)"))
    }
    guard protocolKind == .episodes else { return out }
    if !["evaluation", "validation", "folder"].contains(split) {
      out.append(("split", "evaluation (the test set), validation or folder (your own images, with \"path\"); got \(split)"))
    }
    if split == "folder" && (path ?? "").isEmpty { out.append(("path", "the folder of images, ROOT/<group>/<class>/*.png, for split folder")) }
    if split != "folder" && path != nil { out.append(("path", "only split folder reads a path; remove it or set \"split\": \"folder\"")) }
    if !(1...Limits.episodes).contains(episodes) { out.append(("episodes", "between 1 and \(Limits.episodes); got \(episodes)")) }
    let (perEpisode, o1) = spec.ways.multipliedReportingOverflow(by: spec.shots &+ spec.queries)
    let (images, o2) = perEpisode.multipliedReportingOverflow(by: episodes)
    if o1 || o2 || images > Limits.imagesScored { out.append(("episodes", "episodes x ways x (shots + queries) at most \(Limits.imagesScored) images scored")) }
    // A folder's classes may hold more than Omniglot's 20 drawings; the sampler checks the
    // folder's own counts before any work.
    out += nested("spec", spec.problems().filter { split != "folder" || $0.keyPath != "shots + queries" })
    return out
  }
}

/// A problem with an experiment file, naming the file and the key path.
package struct ConfigError: Error, CustomStringConvertible {
  package let file: String
  package let keyPath: String
  package let message: String
  package var description: String { keyPath.isEmpty ? "\(file): \(message)" : "\(file): \(keyPath): \(message)" }
}

/// An experiment file's bytes: a regular file of at most 16 MB, checked before it is read.
func readExperimentFile(_ path: String) throws -> Data {
  do {
    return try UserFile.read(path, maximumBytes: 16 << 20)
  } catch let error as UserFileError {
    throw ConfigError(file: path, keyPath: "", message: "\(error.problem); give the path of an experiment JSON (see experiments/)")
  }
}

extension ExperimentConfig {
  /// Reads and checks an experiment file: strict decoding, then every value.
  package static func load(_ path: String) throws -> ExperimentConfig {
    return try decode(try readExperimentFile(path), source: path)
  }

  /// Decodes and checks an experiment's JSON; errors name `source` (a file, or a stored run).
  package static func decode(_ data: Data, source: String) throws -> ExperimentConfig {
    guard data.count <= 16 << 20 else { throw ConfigError(file: source, keyPath: "", message: "\(data.count) bytes is not an experiment file (at most 16 MB)") }
    if let problem = JSONScan.firstProblem([UInt8](data)) { throw ConfigError(file: source, keyPath: problem.keyPath, message: problem.message) }
    let config: ExperimentConfig
    do {
      config = try JSONDecoder().decode(ExperimentConfig.self, from: data)
    } catch let error as DecodingError {
      if case .dataCorrupted(let context) = error, context.codingPath.isEmpty,
        let problem = JSONScan.firstUnfittingNumber([UInt8](data), as: ExperimentConfig.self)
      {
        throw ConfigError(file: source, keyPath: problem.keyPath, message: problem.message)
      }
      throw ConfigError.from(error, file: source)
    } catch {
      throw ConfigError(file: source, keyPath: "", message: "\(error)")
    }
    try config.check(source: source)
    return config
  }

  /// Throws the first problem of the values, naming `source` and the key path.
  package func check(source: String) throws {
    if let problem = problems().first { throw ConfigError(file: source, keyPath: problem.keyPath, message: problem.message) }
  }

  /// The resolved configuration as canonical JSON (sorted keys), stored with every run.
  package var canonicalJSON: String { String(decoding: (try? JSONEncoder.canonical().encode(self)) ?? Data(), as: UTF8.self) }

  /// What identifies the experiment, as canonical JSON: the resolved configuration without
  /// `threads` (how many threads compute it is the machine's business, so `--threads`, the
  /// file's `threads` or `--set threads=N` never make a second configuration of one recipe).
  package var identityJSON: String {
    let encoder = JSONEncoder.canonical()
    encoder.userInfo[ExperimentConfig.identityOnly] = true
    return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
  }

  /// SHA-256 of `identityJSON`: the configuration hash, which runs of one configuration share
  /// (sweeps skip a configuration by it, the gate and `compare` pair runs by it).
  package var hash: String { SHA256.hex(Array(identityJSON.utf8)) }
}

extension ConfigError {
  package static func from(_ error: DecodingError, file: String) -> ConfigError {
    func path(_ codingPath: [any CodingKey]) -> String {
      var out = ""
      for key in codingPath {
        if let index = key.intValue { out += "[\(index)]" } else { out += out.isEmpty ? key.stringValue : ".\(key.stringValue)" }
      }
      return out
    }
    switch error {
    case .keyNotFound(let key, let context):
      return ConfigError(file: file, keyPath: path(context.codingPath + [key]), message: "missing; this key is required")
    case .typeMismatch(let type, let context):
      return ConfigError(file: file, keyPath: path(context.codingPath), message: "wrong type; expected \(describe(type))")
    case .valueNotFound(let type, let context):
      return ConfigError(file: file, keyPath: path(context.codingPath), message: "null; expected \(describe(type))")
    case .dataCorrupted(let context):
      if context.codingPath.isEmpty {
        let underlying = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
        return ConfigError(file: file, keyPath: "", message: "not valid JSON (\(underlying ?? context.debugDescription))")
      }
      var message = context.debugDescription
      if message.hasPrefix("Cannot initialize") {
        let names = context.codingPath.filter { $0.intValue == nil }.map(\.stringValue)
        let got = message.components(separatedBy: "invalid String value ").dropFirst().first.map { "; got \($0)" } ?? ""
        if let allowed = allowedValues(key: names.last ?? "", parent: names.dropLast().last ?? "") {
          message = "one of " + allowed.joined(separator: ", ") + got
        } else {
          message = "not one of the allowed values (\(message))"
        }
      }
      return ConfigError(file: file, keyPath: path(context.codingPath), message: message)
    @unknown default:
      return ConfigError(file: file, keyPath: "", message: "\(error)")
    }
  }

  /// The values a key of a fixed set of words takes (`parent` tells the two `kind`s apart).
  package static func allowedValues(key: String, parent: String) -> [String]? {
    switch (parent, key) {
    case ("optimizer", "kind"): return OptimizerSettings.Kind.allCases.map(\.rawValue)
    case ("schedule", "kind"): return LearningRateSchedule.Kind.allCases.map(\.rawValue)
    case (_, "pairing"): return TrainingConfig.Pairing.allCases.map(\.rawValue)
    case ("data", "split"): return DataConfig.OmniglotProtocol.allCases.map(\.rawValue)
    case (_, "objective"): return FewShotMethods.names
    case (_, "similarity"): return Similarity.allCases.map(\.rawValue)
    case ("model", "resampling"): return ImageResampling.allCases.map(\.rawValue)
    case ("model", "initialization"): return WeightInitialization.allCases.map(\.rawValue)
    case ("model", "relationModule"): return RelationModule.allCases.map(\.rawValue)
    case (_, "precision"): return PrecisionSetting.allCases.map(\.rawValue)
    case (_, "convolutions"): return ConvolutionsSetting.allCases.map(\.rawValue)
    case ("training", "fusion"): return FusionSetting.allCases.map(\.rawValue)
    case (_, "backbone"): return BackboneKind.allCases.map(\.rawValue)
    case (_, "headActivation"): return HeadActivation.allCases.map(\.rawValue)
    case (_, "alphabetMode"): return AlphabetMode.allCases.map(\.rawValue)
    case (_, "protocol"): return ProtocolConfig.Kind.allCases.map(\.rawValue)
    default: return nil
    }
  }

  private static func describe(_ type: Any.Type) -> String {
    switch type {
    case is Int.Type, is UInt64.Type: return "an integer"
    case is Double.Type: return "a number"
    case is Bool.Type: return "true or false"
    case is String.Type: return "a string"
    default: return "\(type)"
    }
  }
}
