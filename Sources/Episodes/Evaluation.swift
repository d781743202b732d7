import Foundation
import Support

/// What anything evaluated on episodes implements: embed each image once, then score each
/// episode's queries given its support set. Trained networks adapt to it in Experiments
/// (`NetworkScorer`, which hands the episode to the network's few-shot method: a method that
/// adapts to the support set does so in `classScores`); the pixel and Modified Hausdorff
/// baselines implement it here.
public protocol OneShotScorer {
  /// Whatever the scorer keeps per image (a feature vector, a point set).
  associatedtype Embedding

  /// Embeds `count` images of `size` x `size` ink intensities (ink = 255), stored back to back.
  func embed(_ pixels: UnsafeBufferPointer<UInt8>, count: Int, size: Int) throws -> [Embedding]

  /// `result[q][s]`: similarity of query q to support image s; higher means more alike.
  func similarities(queries: [Embedding], support: [Embedding]) throws -> [[Double]]

  /// `result[q][c]`: the score of query q for class c, whose support images are `support[c]`;
  /// the query goes to the class of the highest score. By default the mean similarity over the
  /// class's support images; a method may do anything with the support set instead (prototypes,
  /// a classifier fitted on it).
  func classScores(queries: [Embedding], support: [[Embedding]]) throws -> [[Double]]

  /// Whether the evaluator hands this scorer the images in a random order rather than the
  /// store's (whose order follows the classes). An outside scorer must not learn a label from
  /// the order; the harness's own networks embed each image alone, so the order cannot matter
  /// to them, and they keep the store's order.
  var shufflesImageOrder: Bool { get }
}

extension OneShotScorer {
  public var shufflesImageOrder: Bool { false }

  public func classScores(queries: [Embedding], support: [[Embedding]]) throws -> [[Double]] {
    meanPerClass(try similarities(queries: queries, support: support.flatMap { $0 }), classSizes: support.map(\.count))
  }
}

/// `scores[q][s]` over support images laid out class after class (`classSizes[c]` each),
/// averaged per class: `result[q][c]`.
public func meanPerClass(_ scores: [[Double]], classSizes: [Int]) -> [[Double]] {
  scores.map { row in
    var column = 0
    return classSizes.map { count in
      var sum = 0.0
      for _ in 0..<count {
        sum += row[column]
        column += 1
      }
      return sum / Double(count)
    }
  }
}

/// One episode in the form the evaluator scores: classes given by their support images,
/// queries with their true class. Image numbers index the evaluated image store.
public struct ScoringEpisode: Sendable, Equatable {
  /// A query image and the position of its class in `support`.
  public struct Query: Sendable, Equatable {
    /// Image number in the store.
    public let image: Int
    /// Its class: an index into `support`.
    public let label: Int
    /// A query.
    public init(image: Int, label: Int) {
      self.image = image
      self.label = label
    }
  }
  /// The episode's number (its random-stream counter, or Lake's run number - 1).
  public let index: Int
  /// The alphabet, for per-alphabet breakdowns; nil for across-alphabet episodes.
  public let group: String?
  /// `support[c]`: the K images of class c.
  public let support: [[Int]]
  /// The queries to classify.
  public let queries: [Query]

  /// An episode to score.
  public init(index: Int, group: String?, support: [[Int]], queries: [Query]) {
    self.index = index
    self.group = group
    self.support = support
    self.queries = queries
  }
}

extension Episode {
  /// This episode in scoring form; image numbers are indices into `split.images`.
  public func scoring(in split: ImageSplit) -> ScoringEpisode {
    var queryList: [ScoringEpisode.Query] = []
    for (label, images) in queries.enumerated() { for image in images { queryList.append(.init(image: image, label: label)) } }
    return ScoringEpisode(index: index, group: alphabet.map { split.alphabets[$0] }, support: support, queries: queryList)
  }
}

/// The outcome of one episode.
public struct EpisodeOutcome: Sendable, Equatable, Codable {
  /// The episode's number.
  public let index: Int
  /// Its alphabet, if within one.
  public let group: String?
  /// Queries classified correctly.
  public let correct: Int
  /// Queries in the episode.
  public let total: Int
  /// correct / total.
  public var accuracy: Double { Double(correct) / Double(total) }

  /// An outcome, e.g. one read back from a store or a baseline file.
  public init(index: Int, group: String?, correct: Int, total: Int) {
    self.index = index
    self.group = group
    self.correct = correct
    self.total = total
  }
}

/// Accuracy over a set of episodes, with a 95% confidence interval.
public struct EvaluationSummary: Sendable {
  /// Per-episode outcomes, in episode order.
  public let episodes: [EpisodeOutcome]
  /// Wall-clock seconds spent embedding and scoring.
  public let seconds: Double
  /// Distinct images embedded (each once).
  public let embeddedImages: Int

  /// A summary of `episodes` (scored now, or read back to recompute their figures).
  public init(episodes: [EpisodeOutcome], seconds: Double, embeddedImages: Int) {
    self.episodes = episodes
    self.seconds = seconds
    self.embeddedImages = embeddedImages
  }

  /// Correct over all queries (the mean of episode accuracies when episodes are equal-sized).
  public var accuracy: Double {
    let correct = episodes.reduce(0) { $0 + $1.correct }
    let total = episodes.reduce(0) { $0 + $1.total }
    return total == 0 ? 0 : Double(correct) / Double(total)
  }

  /// The 95% confidence interval of `accuracy`, inside [0, 1]: Wilson's score interval with
  /// the effective number of trials the episodes' spread implies (`Statistics.accuracyInterval95`).
  public var interval95: (low: Double, high: Double) {
    let total = episodes.reduce(0) { $0 + $1.total }
    if episodes.count < 2 { return Statistics.wilson95(accuracy, trials: Double(total)) }
    return Statistics.accuracyInterval95(episodes.map(\.accuracy), pooled: accuracy, trials: total)
  }

  /// Half-width of the symmetric interval 1.96 x std(episode accuracies) / sqrt(n), as
  /// Meta-Dataset reports (it can leave [0, 1] near perfect accuracy: `interval95` is what
  /// results record); for a single episode, the binomial interval over its queries.
  public var halfWidth95: Double {
    if episodes.count >= 2 { return 1.96 * Statistics.standardError(episodes.map(\.accuracy)) }
    let n = Double(episodes.first?.total ?? 0)
    guard n > 0 else { return 0 }
    let p = accuracy
    return 1.96 * (p * (1 - p) / n).squareRoot()
  }

  /// Lake's figure for his runs: mean over episodes of 100 - 100 x accuracy.
  public var meanErrorPercent: Double {
    episodes.isEmpty ? 0 : episodes.reduce(0) { $0 + (100 - 100 * $1.accuracy) } / Double(episodes.count)
  }

  /// Accuracy per alphabet (for within-alphabet protocols), sorted by alphabet name.
  public var byGroup: [(group: String, accuracy: Double, episodes: Int)] {
    var sums: [String: (correct: Int, total: Int, count: Int)] = [:]
    for outcome in episodes {
      guard let group = outcome.group else { continue }
      let s = sums[group] ?? (0, 0, 0)
      sums[group] = (s.correct + outcome.correct, s.total + outcome.total, s.count + 1)
    }
    return sums.keys.sorted(by: utf8Less).map { key in
      let s = sums[key]!
      return (key, Double(s.correct) / Double(s.total), s.count)
    }
  }
}

/// Small statistics shared by the evaluator and the comparisons.
/// Scores episodes with a `OneShotScorer`: embeds every image the episodes use exactly once,
/// then classifies each query as the class with the highest mean similarity over its K
/// support images (ties go to the lower class index, as numpy's argmax).
/// The two phases of scoring a protocol, as progress reports them.
public enum EvaluationPhase: Sendable {
  /// Embedding each image the episodes use, once (counted in images).
  case embedding
  /// Scoring episodes against the cached embeddings (counted in episodes).
  case scoring
}

public struct Evaluator {
  /// Image side.
  public let size: Int
  /// Ink intensities of the image store, `size * size` bytes per image.
  public let pixels: [UInt8]
  /// How many images to hand the scorer at a time.
  public var batchSize: Int

  /// An evaluator over an image store.
  public init(size: Int, pixels: [UInt8], batchSize: Int = 256) {
    self.size = size
    self.pixels = pixels
    self.batchSize = batchSize
  }

  /// An evaluator over a split's images.
  public init(split: ImageSplit, batchSize: Int = 256) { self.init(size: split.size, pixels: split.pixels, batchSize: batchSize) }

  /// An evaluator over Lake's run images.
  public init(runs: LakeRuns, batchSize: Int = 256) { self.init(size: runs.size, pixels: runs.pixels, batchSize: batchSize) }

  /// Scores every episode: first embeds each image the episodes use once, then scores the
  /// episodes; `progress` is called with the phase, the work done in it and its total (images
  /// while embedding, episodes while scoring); an error it throws stops the evaluation.
  public func evaluate<Scorer: OneShotScorer>(
    _ scorer: Scorer, episodes: [ScoringEpisode], progress: ((EvaluationPhase, Int, Int) throws -> Void)? = nil
  ) throws -> EvaluationSummary {
    let start = Date()
    var used = Set<Int>()
    for episode in episodes {
      for images in episode.support { used.formUnion(images) }
      for query in episode.queries { used.insert(query.image) }
    }
    var order = used.sorted()
    if scorer.shufflesImageOrder {
      var generator = SystemRandomNumberGenerator()
      order.shuffle(using: &generator)
    }
    var slot = [Int: Int](minimumCapacity: order.count)
    for (i, image) in order.enumerated() { slot[image] = i }
    let imageBytes = size * size
    var embeddings: [Scorer.Embedding] = []
    embeddings.reserveCapacity(order.count)
    var gathered = [UInt8](repeating: 0, count: batchSize * imageBytes)
    var offset = 0
    while offset < order.count {
      let count = min(batchSize, order.count - offset)
      for i in 0..<count {
        let source = order[offset + i] * imageBytes
        gathered.replaceSubrange((i * imageBytes)..<((i + 1) * imageBytes), with: pixels[source..<(source + imageBytes)])
      }
      let batch = try gathered.withUnsafeBufferPointer { try scorer.embed(UnsafeBufferPointer(rebasing: $0[0..<(count * imageBytes)]), count: count, size: size) }
      precondition(batch.count == count, "scorer returned \(batch.count) embeddings for \(count) images")
      embeddings.append(contentsOf: batch)
      offset += count
      try progress?(.embedding, offset, order.count)
    }
    var outcomes: [EpisodeOutcome] = []
    outcomes.reserveCapacity(episodes.count)
    for (done, episode) in episodes.enumerated() {
      let scores = try scorer.classScores(
        queries: episode.queries.map { embeddings[slot[$0.image]!] }, support: episode.support.map { $0.map { embeddings[slot[$0]!] } })
      var correct = 0
      for (q, query) in episode.queries.enumerated() {
        var best = -Double.infinity
        var predicted = 0
        for (c, score) in scores[q].enumerated() where score > best {
          best = score
          predicted = c
        }
        if predicted == query.label { correct += 1 }
      }
      outcomes.append(EpisodeOutcome(index: episode.index, group: episode.group, correct: correct, total: episode.queries.count))
      try progress?(.scoring, done + 1, episodes.count)
    }
    return EvaluationSummary(episodes: outcomes, seconds: Date().timeIntervalSince(start), embeddedImages: order.count)
  }
}
