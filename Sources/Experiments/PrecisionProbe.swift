import Foundation
import Model
import Support

// `"precision": "auto"`: the convolutions' arithmetic in training is whichever of fp32 and bf16
// this machine runs faster for this network, measured, never assumed (bf16 dot products are
// full rate on some CPUs of this kind and half rate on others). The probe times training steps
// of the experiment's own network in both; the answer is cached per host, CPU, oneDNN version,
// network and batch, and recorded with the run (tag `precision.resolved`). Evaluation is fp32
// whatever it says, so recorded accuracies never depend on it.

/// The `precision` key of an experiment's training section.
package enum PrecisionSetting: String, Codable, CaseIterable {
  case fp32, bf16, auto

  /// The setting when it names an arithmetic itself.
  package var fixed: ConvolutionPrecision? { ConvolutionPrecision(rawValue: rawValue) }
}

/// The `convolutions` key of an experiment's training section.
package enum ConvolutionsSetting: String, Codable, CaseIterable {
  case direct, auto

  /// The network setting it stands for.
  package var algorithm: ConvolutionAlgorithm { self == .auto ? .auto : .direct }
}

/// Times the two arithmetics on the experiment's network and remembers the answer.
package enum PrecisionProbe {
  /// What the probe found.
  package struct Outcome: Codable, Equatable {
    package var chosen: ConvolutionPrecision
    package var millisecondsPerStep: [String: Double]
    /// Whether it came from the cache.
    package var cached: Bool = false
    /// Why an arithmetic was not timed (bf16 where the CPU has no bf16 dot products).
    package var skipped: String?

    init(chosen: ConvolutionPrecision, millisecondsPerStep: [String: Double], skipped: String? = nil) {
      self.chosen = chosen
      self.millisecondsPerStep = millisecondsPerStep
      self.skipped = skipped
    }
  }

  /// Why bf16 is not worth timing here, or nil when it is: without native bf16 dot products
  /// oneDNN 2.6 runs bf16 convolutions on a reference kernel (AVX2: 63 s a probe step of the
  /// VGG16 network against fp32's 37 s) or converts in software (AVX-512 without BF16), so
  /// fp32 wins and timing bf16 would only cost minutes.
  package static var bf16SkipReason: String? {
    KernelISA.bf16 ? nil : "bf16 not timed: this CPU's kernels (\(KernelISA.description)) have no bf16 dot products, so fp32 is faster"
  }

  /// The cache file: `$ONESHOT_CACHE` or `~/.cache/oneshot-bench`, `precision.json`.
  package static var cacheURL: URL {
    let environment = ProcessInfo.processInfo.environment
    let folder = environment["ONESHOT_CACHE"].map { URL(fileURLWithPath: $0) }
      ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/oneshot-bench")
    return folder.appendingPathComponent("precision.json")
  }

  /// How this build trains (bumped when a change to the training compute path can change which
  /// precision is faster, so that older measurements are not reused).
  package static let computePath = "training path 2 (backbone in oneDNN layouts)"

  /// The key of a measurement: the machine, the library, this build's compute path and the work measured.
  package static func key(model: ModelConfig, images: Int, convolutions: ConvolutionsSetting = .direct) -> String {
    let config = String(decoding: (try? JSONEncoder.canonical().encode(model)) ?? Data(), as: UTF8.self)
    let algorithm = convolutions == .direct ? [] : ["convolutions \(convolutions.rawValue)"]
    return ([ProcessInfo.processInfo.hostName, Provenance.current().cpu, "oneDNN \(oneDNNVersion)", computePath, "\(ComputeThreads.current) threads", "\(images) images"] + algorithm + [config])
      .joined(separator: " | ")
  }

  /// The faster arithmetic for training `model` on steps of `images` images (with Winograd
  /// where it wins when `convolutions` is auto: fp32 then competes at its best).
  /// Without bf16 dot products there is one candidate: fp32 at once, nothing timed or cached.
  /// `announce` is called when steps are about to be timed (not from the cache); `status` says
  /// which step runs (a step of a large network takes a minute on a slow CPU).
  package static func resolve(
    model: ModelConfig, method: any FewShotMethod.Type, images: Int, convolutions: ConvolutionsSetting = .direct, status: WorkStatus = WorkStatus(""), announce: () -> Void = {}
  ) -> Outcome {
    if let skipped = bf16SkipReason { return Outcome(chosen: .fp32, millisecondsPerStep: [:], skipped: skipped) }
    let key = key(model: model, images: images, convolutions: convolutions)
    var cache = (try? JSONDecoder().decode([String: Outcome].self, from: Data(contentsOf: cacheURL))) ?? [:]
    if var known = cache[key] {
      known.cached = true
      return known
    }
    announce()
    // Steps of the real network on a batch of the real size (capped: the probe only has to
    // rank the two), one warm-up and the median of three.
    let batch = max(2, min(images, 64)) / 2 * 2
    let side = model.inputSize
    var rng = NormalSampler(seed: 1)
    let input = Tensor(shape: [batch, 1, side, side], data: rng.normal(count: batch * side * side, std: 1).map { abs($0) })
    var times: [String: Double] = [:]
    for precision in ConvolutionPrecision.allCases {
      var network = EmbeddingNetwork(config: model, seed: 1)
      network.precision = precision
      network.convolutionAlgorithm = convolutions.algorithm
      let step = { method.probeStep(network: &network, images: input) }
      status.text = "precision auto: \(precision.rawValue) warm-up step"
      step()
      let samples = (0..<3).map { i -> Double in
        status.text = "precision auto: \(precision.rawValue) step \(i + 1) of 3"
        let start = Date()
        step()
        return Date().timeIntervalSince(start)
      }.sorted()
      times[precision.rawValue] = 1000 * samples[1]
    }
    let chosen: ConvolutionPrecision = (times["bf16"] ?? .infinity) < (times["fp32"] ?? .infinity) ? .bf16 : .fp32
    let outcome = Outcome(chosen: chosen, millisecondsPerStep: times)
    cache[key] = outcome
    if let data = try? JSONEncoder.canonical(pretty: true).encode(cache) {
      try? FileManager.default.createDirectory(at: cacheURL.deletingLastPathComponent(), withIntermediateDirectories: true)
      try? data.write(to: cacheURL, options: .atomic)
    }
    return outcome
  }
}
