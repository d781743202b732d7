/// A run's lifecycle state.
public enum RunStatus: String, Sendable, Codable, CaseIterable {
  case running, completed, failed, interrupted
}

/// What is known when a run starts: its identity and provenance.
public struct NewRun: Sendable {
  /// Experiment name (created on first use).
  public var experiment: String
  /// The resolved configuration as JSON, stored verbatim.
  public var configJSON: String
  /// A hash of the configuration, for grouping identical runs.
  public var configHash: String
  /// The configuration flattened to `a.b.c = value` pairs.
  public var params: [(key: String, value: String)]
  /// Git commit of the harness, and whether the work tree had changes.
  public var gitCommit: String?
  /// True when the work tree was dirty.
  public var gitDirty: Bool?
  /// Dataset fingerprint (see Episodes).
  public var datasetFingerprint: String?
  /// Host name.
  public var host: String?
  /// CPU model.
  public var cpu: String?
  /// Harness version.
  public var harnessVersion: String?
  /// Swift compiler version.
  public var swiftVersion: String?
  /// Run id; a new UUID unless given (resuming keeps its id).
  public var id: String?

  /// A run description; provenance fields default to unknown.
  public init(experiment: String, configJSON: String, configHash: String, params: [(key: String, value: String)] = []) {
    self.experiment = experiment
    self.configJSON = configJSON
    self.configHash = configHash
    self.params = params
  }
}

/// One point of a metric's history.
public struct MetricPoint: Sendable, Equatable {
  /// e.g. `train.loss`, `validation.accuracy`, `train.pairsPerSecond`.
  public var key: String
  /// Training step.
  public var step: Int
  /// The value.
  public var value: Double
  /// ISO 8601 time; filled in when logged if empty.
  public var time: String

  /// A metric value at a step, timed now.
  public init(key: String, step: Int, value: Double, time: String = "") {
    self.key = key
    self.step = step
    self.value = value
    self.time = time
  }
}

/// The score of a run on one protocol.
public struct ProtocolResult: Sendable, Equatable, Codable {
  /// Protocol name, unique within a run: `lake20`, `evaluation-20way-1shot-within`, ...
  public var protocolName: String
  /// Split scored (`lake20`, `evaluation`, `background/validation`).
  public var split: String
  /// N.
  public var ways: Int
  /// K.
  public var shots: Int
  /// Q per class.
  public var queries: Int
  /// Number of episodes.
  public var episodes: Int
  /// Accuracy in [0, 1].
  public var accuracy: Double
  /// Lower end of the 95% confidence interval.
  public var ciLow: Double
  /// Upper end of the 95% confidence interval.
  public var ciHigh: Double
  /// Seconds spent scoring.
  public var seconds: Double

  /// A protocol result.
  public init(protocolName: String, split: String, ways: Int, shots: Int, queries: Int, episodes: Int, accuracy: Double, ciLow: Double, ciHigh: Double, seconds: Double) {
    self.protocolName = protocolName
    self.split = split
    self.ways = ways
    self.shots = shots
    self.queries = queries
    self.episodes = episodes
    self.accuracy = accuracy
    self.ciLow = ciLow
    self.ciHigh = ciHigh
    self.seconds = seconds
  }
}

/// One episode's outcome, kept so two runs on the same episodes compare pair by pair.
public struct EpisodeRow: Sendable, Equatable, Codable {
  /// Episode number within the protocol.
  public var episode: Int
  /// Its alphabet, for within-alphabet protocols.
  public var alphabet: String?
  /// Queries classified correctly.
  public var correct: Int
  /// Queries.
  public var total: Int

  /// An episode outcome.
  public init(episode: Int, alphabet: String?, correct: Int, total: Int) {
    self.episode = episode
    self.alphabet = alphabet
    self.correct = correct
    self.total = total
  }
}

/// A run as listed.
public struct RunSummary: Sendable, Equatable {
  /// UUID.
  public var id: String
  /// Experiment name.
  public var experiment: String
  /// Status.
  public var status: RunStatus
  /// ISO 8601 start time.
  public var startedAt: String
  /// ISO 8601 end time, if finished.
  public var finishedAt: String?
  /// Wall time in seconds, if finished.
  public var durationSeconds: Double?
  /// Configuration hash.
  public var configHash: String
  /// Error message of a failed run.
  public var error: String?
}

/// A run in full.
public struct RunDetail: Sendable {
  /// The listing fields.
  public var summary: RunSummary
  /// Resolved configuration JSON.
  public var configJSON: String
  /// Flattened parameters, sorted by key.
  public var params: [(key: String, value: String)]
  /// Results per protocol, sorted by protocol.
  public var results: [ProtocolResult]
  /// Tags, sorted by key.
  public var tags: [(key: String, value: String)]
  /// Provenance: git commit, dirty flag, dataset fingerprint, checkpoint, host, versions.
  public var provenance: [(key: String, value: String)]
}

/// Two runs' outcomes on the same episode of a protocol.
public struct AlignedEpisode: Sendable, Equatable {
  /// Episode number.
  public var episode: Int
  /// Alphabet, if recorded.
  public var alphabet: String?
  /// Run A's outcome.
  public var a: (correct: Int, total: Int)
  /// Run B's outcome.
  public var b: (correct: Int, total: Int)

  public static func == (l: AlignedEpisode, r: AlignedEpisode) -> Bool {
    l.episode == r.episode && l.alphabet == r.alphabet && l.a == r.a && l.b == r.b
  }
}

/// The metric keys the trainer writes and the reports read.
public enum MetricKey {
  /// Mean training loss since the last log point.
  public static let trainingLoss = "train.loss"
  /// Training throughput since the last log point.
  public static let pairsPerSecond = "train.pairsPerSecond"
  /// Training throughput of the prototypical objective (images embedded a second).
  public static let imagesPerSecond = "train.imagesPerSecond"
  /// The learning rate of the step.
  public static let learningRate = "train.learningRate"
  /// Accuracy on the validation episodes (model selection).
  public static let validationAccuracy = "validation.accuracy"
}

/// When a run first reached a validation target (`training.targets`): four metrics per target,
/// all at the step of the validation that reached it, e.g. `target@0.85.training_s`.
public struct TargetReached: Sendable, Equatable {
  /// The validation accuracy aimed at, in (0, 1].
  public let target: Double
  /// The step of the first validation at or above it.
  public let step: Int
  /// Seconds of training steps until then (earlier sittings included, validation excluded).
  public let trainingSeconds: Double
  /// Wall seconds of the run until then, validation included.
  public let wallSeconds: Double
  /// Training pairs (or, for the prototypical objective, episodes' queries) and images seen.
  public let pairs: Double
  public let images: Double

  public init(target: Double, step: Int, trainingSeconds: Double, wallSeconds: Double, pairs: Double, images: Double) {
    self.target = target
    self.step = step
    self.trainingSeconds = trainingSeconds
    self.wallSeconds = wallSeconds
    self.pairs = pairs
    self.images = images
  }

  /// The prefix of every target metric.
  public static let prefix = "target@"
  static let fields = ["training_s", "wall_s", "pairs", "images"]

  /// The four metric points.
  public var points: [MetricPoint] {
    zip(TargetReached.fields, [trainingSeconds, wallSeconds, pairs, images]).map { MetricPoint(key: "\(TargetReached.prefix)\(targetText).\($0)", step: step, value: $1) }
  }

  /// The target as written in keys: `0.85`.
  public var targetText: String { TargetReached.text(target) }

  public static func text(_ target: Double) -> String { String(format: "%g", target) }

  /// Reads the targets back from a run's `target@` metric points, lowest target first.
  public static func from(_ points: [MetricPoint]) -> [TargetReached] {
    var byTarget: [Double: [String: MetricPoint]] = [:]
    for point in points where point.key.hasPrefix(prefix) {
      let rest = point.key.dropFirst(prefix.count)
      guard let dot = rest.lastIndex(of: "."), let target = Double(rest[..<dot]) else { continue }
      byTarget[target, default: [:]][String(rest[rest.index(after: dot)...])] = point
    }
    return byTarget.keys.sorted().compactMap { target in
      let f = byTarget[target]!
      guard let training = f["training_s"], let wall = f["wall_s"], let pairs = f["pairs"], let images = f["images"] else { return nil }
      return TargetReached(target: target, step: training.step, trainingSeconds: training.value, wallSeconds: wall.value, pairs: pairs.value, images: images.value)
    }
  }
}

/// The tag keys the harness writes and the reports and gate read.
/// What a run did: trained a network (and scored its best checkpoint), or scored a given
/// checkpoint. Recorded as the tag `mode` (absent: train, as every run before the tag existed).
public enum RunMode: String, CaseIterable, Codable, Sendable {
  case train
  case evalOnly = "eval-only"
  /// Scored a model outside the harness through an outside scorer (`run --eval-only --scorer`).
  case external

  /// The mode a run's tags record.
  public init(tags: [String: String]) { self = tags[TagKey.mode].flatMap(RunMode.init(rawValue:)) ?? .train }

  /// The mode of a run given its tags as pairs.
  public init(tags: [(key: String, value: String)]) { self = tags.last { $0.key == TagKey.mode }.flatMap { RunMode(rawValue: $0.value) } ?? .train }
}

public enum TagKey {
  /// `eval-only` for a run that scored a checkpoint without training (absent: trained).
  public static let mode = "mode"
  /// A protocol's episode identity (SHA-256 of its episodes' images).
  public static func episodes(_ protocolName: String) -> String { "episodes." + protocolName }
  /// A protocol's episode sequence: split, spec, seed (and a folder's fingerprint), the things
  /// episode i is a pure function of. Two runs with the same sequence (and dataset) scored the
  /// same episode i, whatever their episode counts.
  public static func sequence(_ protocolName: String) -> String { "sequence." + protocolName }
  /// A user's free-text note on a run (`run note`), shown by `report --run` and the HTML page.
  public static let note = "note"
  /// `yes` when an outside scorer of whole episodes (protocol version 2) said it uses each
  /// episode's queries together; `no` when it said it does not. Written by the harness only.
  public static let scorerTransductive = "scorer.transductive"
  /// A user's mark on a run of their own that looked at the queries together (`--tag
  /// transductive=yes`); reports mark such runs as they mark transductive scorers.
  public static let transductive = "transductive"
  /// How an eval-only run adapted its checkpoint to each episode, for a method that adapts
  /// (MAML: "step 0.1, 10 steps", from the checkpoint's training configuration).
  public static let scoringAdaptation = "scoring.adaptation"
  /// The few-shot method an eval-only run scored its checkpoint by: the checkpoint's own
  /// (`objective` in its metadata), whatever the eval-only file's `training.objective` says.
  public static let scoringMethod = "scoring.method"
  /// The algorithm of each training convolution's directions (`training.convolutions: auto`) in
  /// the sitting that started at `step`: `convolutions.chosen` for a run's first sitting,
  /// `convolutions.chosen.from-step-N` for one resumed at step N.
  public static func convolutionsChosen(resumedAt step: Int) -> String {
    step == 0 ? "convolutions.chosen" : "convolutions.chosen.from-step-\(step)"
  }

  /// Whether a run's figures came from a method that used each episode's queries together:
  /// not comparable with inductive figures, so every report marks them.
  public static func isTransductive(_ tags: [String: String]) -> Bool {
    tags[scorerTransductive] == "yes" || tags[transductive]?.lowercased() == "yes"
  }

  /// Keys the harness writes itself, which `run tag` refuses so that a user's tag never changes
  /// what a run says about how it was made.
  public static func isReserved(_ key: String) -> Bool {
    let exact: Set = [mode, "ensemble_members", "ensemble_runs", "precision.resolved", "onednn.fallbacks", "convolutions.chosen", "dataset.folder", "dataset.training_folder", "data.held_out", scoringAdaptation, scoringMethod]
    // scorer.*: what an outside scorer said of itself (scorer.model decides its seed group);
    // mlflow.*: MLflow's own tags, which an export would pass on (mlflow.runName renames a run).
    return exact.contains(key) || key.hasPrefix("episodes.") || key.hasPrefix("sequence.") || key.hasPrefix("convolutions.chosen") || key.hasPrefix("scorer.") || key.hasPrefix("mlflow.")
  }
}
