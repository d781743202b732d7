import Foundation
import Model
import Support

// `"precision": "auto"`: the convolutions' arithmetic in training is whichever of fp32 and bf16
// this machine runs faster for this network, measured, never assumed (bf16 dot products are
// full rate on some CPUs of this kind and half rate on others). The probe times training steps
// of the experiment's own network in both; the answer is cached per host, CPU, oneDNN version,
// network and batch, and recorded with the run (tag `precision.resolved`). Evaluation is fp32
// whatever it says, so recorded accuracies never depend on it.
//
// The same probe decides, for a network with batch norm (with ReLU) before max pooling, whether
// training runs the two as one fused layer or as oneDNN's two primitives (the fused layer moves
// less memory; whether that wins depends on the machine's memory and oneDNN's kernels), at the
// chosen precision or at the file's fixed one. Recorded as tag `fusion.resolved`.

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

/// The `fusion` key of an experiment's training section.
package enum FusionSetting: String, Codable, CaseIterable {
  case auto, fused, unfused

  /// The setting when it names a choice itself.
  package var fixed: Bool? { self == .auto ? nil : self == .fused }
}

/// Times the two arithmetics on the experiment's network and remembers the answer.
package enum PrecisionProbe {
  /// What the probe found.
  package struct Outcome: Codable, Equatable {
    package var chosen: ConvolutionPrecision
    /// Batch norm and max pooling fused (nil: the network has no such pair; nothing to choose).
    package var fused: Bool?
    /// A probe step's milliseconds by candidate: "fp32", "bf16", or with fusion choices
    /// "bf16 fused", "bf16 unfused", ...
    package var millisecondsPerStep: [String: Double]
    /// Whether it came from the cache.
    package var cached: Bool = false
    /// Why an arithmetic was not timed (bf16 where the CPU has no bf16 dot products).
    package var skipped: String?

    init(chosen: ConvolutionPrecision, fused: Bool? = nil, millisecondsPerStep: [String: Double], skipped: String? = nil) {
      self.chosen = chosen
      self.fused = fused
      self.millisecondsPerStep = millisecondsPerStep
      self.skipped = skipped
    }

    /// The fusion setting to train with (true when there is nothing to fuse: it changes nothing).
    package var fusesNormalizationPooling: Bool { fused ?? true }

    /// The `fusion.resolved` tag's value: "fused", "unfused", or "none" (nothing to fuse).
    package var fusionTag: String { fused.map { $0 ? "fused" : "unfused" } ?? "none" }

    /// What a recorded run trained with, from its tags (`precision.resolved`, else the file's
    /// fixed precision; `fusion.resolved`, else unfused: the run was recorded before the fused
    /// layer existed and ran oneDNN's two primitives); nil when neither names a precision.
    package static func recorded(tags: [(key: String, value: String)], fixed: ConvolutionPrecision?) -> Outcome? {
      guard let precision = tags.last(where: { $0.key == "precision.resolved" }).flatMap({ ConvolutionPrecision(rawValue: $0.value) }) ?? fixed else { return nil }
      let fusion = tags.last { $0.key == "fusion.resolved" }?.value
      return Outcome(chosen: precision, fused: fusion == "none" ? nil : fusion == "fused", millisecondsPerStep: [:])
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
  package static let computePath = "training path 3 (backbone in oneDNN layouts; batch norm + pooling fused or not)"

  /// The key of a measurement: the machine, the library, this build's compute path and the work measured.
  package static func key(
    model: ModelConfig, images: Int, convolutions: ConvolutionsSetting = .direct, precisions: [ConvolutionPrecision] = ConvolutionPrecision.allCases, fusions: [Bool?] = [true, false]
  ) -> String {
    let config = String(decoding: (try? JSONEncoder.canonical().encode(model)) ?? Data(), as: UTF8.self)
    let algorithm = convolutions == .direct ? [] : ["convolutions \(convolutions.rawValue)"]
    let candidates =
      (precisions == ConvolutionPrecision.allCases ? [] : ["precision " + precisions.map(\.rawValue).joined(separator: ", ")])
      + (fusions.count == 1 ? ["fusion " + (fusions[0].map { $0 ? "fused" : "unfused" } ?? "none")] : [])
    return ([ProcessInfo.processInfo.hostName, Provenance.current().cpu, "oneDNN \(oneDNNVersion)", computePath, "\(ComputeThreads.current) threads", "\(images) images"] + algorithm + candidates + [config])
      .joined(separator: " | ")
  }

  /// The faster arithmetic for training `model` on steps of `images` images (with Winograd
  /// where it wins when `convolutions` is auto: fp32 then competes at its best), among
  /// `precisions` (both for `auto`, the file's own otherwise), and with batch norm and pooling
  /// fused or not where the network has them. Without bf16 dot products bf16 is no candidate.
  /// With one candidate left nothing is timed or cached. `announce` is called when steps are
  /// about to be timed (not from the cache); `status` says which step runs (a step of a large
  /// network takes a minute on a slow CPU).
  package static func resolve(
    model: ModelConfig, method: any FewShotMethod.Type, images: Int, precisions: [ConvolutionPrecision] = ConvolutionPrecision.allCases,
    fusion: FusionSetting = .auto, convolutions: ConvolutionsSetting = .direct, status: WorkStatus = WorkStatus(""), announce: () -> Void = {}
  ) -> Outcome {
    var precisions = precisions
    var skipped: String? = nil
    if precisions.contains(.bf16), precisions.count > 1, let reason = bf16SkipReason {
      precisions.removeAll { $0 == .bf16 }
      skipped = reason
    }
    let fusible = EmbeddingNetwork(config: model, seed: 1).hasNormalizationPooling
    let fusions: [Bool?] = fusible ? fusion.fixed.map { [$0] } ?? [true, false] : [nil]
    guard precisions.count * fusions.count > 1 else { return Outcome(chosen: precisions[0], fused: fusions[0], millisecondsPerStep: [:], skipped: skipped) }
    let key = key(model: model, images: images, convolutions: convolutions, precisions: precisions, fusions: fusions)
    var cache = (try? JSONDecoder().decode([String: Outcome].self, from: Data(contentsOf: cacheURL))) ?? [:]
    if var known = cache[key] {
      known.cached = true
      known.skipped = skipped
      return known
    }
    announce()
    // Steps of the real network on a batch of the real size (capped: the probe only has to
    // rank the candidates), one warm-up and the median of three.
    let batch = max(2, min(images, 64)) / 2 * 2
    let side = model.inputSize
    var rng = NormalSampler(seed: 1)
    let input = Tensor(shape: [batch, 1, side, side], data: rng.normal(count: batch * side * side, std: 1).map { abs($0) })
    var times: [String: Double] = [:]
    var best: (precision: ConvolutionPrecision, fused: Bool?, milliseconds: Double)? = nil
    for precision in precisions {
      for fused in fusions {
        let name = precision.rawValue + (fused.map { $0 ? " fused" : " unfused" } ?? "")
        var network = EmbeddingNetwork(config: model, seed: 1)
        network.precision = precision
        network.convolutionAlgorithm = convolutions.algorithm
        network.fusesNormalizationPooling = fused ?? true
        let step = { method.probeStep(network: &network, images: input) }
        status.text = "probe: \(name) warm-up step"
        step()
        let samples = (0..<3).map { i -> Double in
          status.text = "probe: \(name) step \(i + 1) of 3"
          let start = Date()
          step()
          return Date().timeIntervalSince(start)
        }.sorted()
        times[name] = 1000 * samples[1]
        if best == nil || 1000 * samples[1] < best!.milliseconds { best = (precision, fused, 1000 * samples[1]) }
      }
    }
    var outcome = Outcome(chosen: best!.precision, fused: best!.fused, millisecondsPerStep: times)
    cache[key] = outcome
    if let data = try? JSONEncoder.canonical(pretty: true).encode(cache) {
      try? FileManager.default.createDirectory(at: cacheURL.deletingLastPathComponent(), withIntermediateDirectories: true)
      try? data.write(to: cacheURL, options: .atomic)
    }
    outcome.skipped = skipped
    return outcome
  }
}
