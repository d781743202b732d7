import Experiments
import ArgumentParser
import CMachine
import Episodes
import Foundation
import Model

/// `oneshot-bench bench`: training and embedding throughput of a network on this machine,
/// optionally side by side with PyTorch's reference script in the same sitting.
struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Measure training pairs/s and embedding images/s (and, with --pytorch, PyTorch's on the same machine).",
    discussion: """
      Prints the machine's arithmetic peak (a register-only FMA loop on the same threads; bf16 dot \
      products too where the CPU has them) and every figure as a share of it. With --algorithm \
      auto (direct or Winograd per layer and direction, measured) or winograd, prints each \
      convolution's choice. With --pytorch PYTHON, runs PyTorch's reference script in the same \
      sitting in fp32, fp32 channels_last and bf16 channels_last and prints the ratio against the \
      fastest of the three (PyTorch's best CPU path).
      """)

  enum Net: String, ExpressibleByArgument, CaseIterable {
    case vgg16, koch, omniglot52, speedrun, protonet

    /// The network's configuration.
    var config: ModelConfig {
      switch self {
      case .vgg16: return ModelConfig(backbone: .vgg16, headActivation: .relu)
      case .koch: return ModelConfig.koch
      case .omniglot52:
        return ModelConfig(backbone: .vgg16, inputSize: 52, batchNorm: true, blocks: [[32, 32], [64, 64], [128, 128], [256, 256]], headHidden: 512, headActivation: .relu)
      case .speedrun:
        return ModelConfig(backbone: .vgg16, inputSize: 40, batchNorm: true, blocks: [[32, 32], [64, 64], [128, 128], [256, 256]], headHidden: 512, headActivation: .relu)
      case .protonet:
        return ModelConfig(backbone: .vgg16, inputSize: 28, batchNorm: true, blocks: [[64], [64], [64], [64]], similarity: .euclidean)
      }
    }

    /// protonet trains on prototypical episodes (experiments/protonet-vinyals.json's: `--pairs`
    /// classes x (1 support + 5 queries), 60 by default), counted in images.
    var episodic: Bool { self == .protonet }

    /// omniglot52 trains on grouped pairs (as many pairs as images, 128 a step); the
    /// others on independent pairs (two images a pair, 32 a step).
    var grouped: Bool { self == .omniglot52 || self == .speedrun }
  }

  @Option(
    help:
      "Network: vgg16 (VGG16 at 105x105, head 4608-512-ReLU-1, as the PyTorch script), koch, omniglot52 (the shipped recipe's network: 52x52, four blocks 32-256 with batch norm, grouped pairs), speedrun (the same at 40x40, experiments/speedrun.json) or protonet (Snell et al.'s 4 blocks of 64 channels at 28x28 on 60-way 1-shot 5-query prototypical episodes, experiments/protonet-vinyals.json).")
  var model: Net = .vgg16
  @Option(help: "Threads for oneDNN and the parallel loops.") var threads: Int = 2
  @Option(help: "Convolution arithmetic: fp32, or bf16 inputs with float accumulation.") var precision: ConvolutionPrecision = .fp32
  @Option(help: "Convolution implementation: direct (oneDNN's direct primitives), auto (direct or Winograd per layer and direction, whichever is faster here), winograd (wherever oneDNN builds it) or im2col.")
  var algorithm: ConvolutionAlgorithm = .direct
  @Option(help: "Pairs per training step (default 32; omniglot52 and speedrun: 128 grouped pairs on 128 images; protonet: the episode's classes, 60, each 1 support + 5 queries).")
  var pairs: Int?
  @Option(help: "Images per embedding batch.") var images: Int = 64
  @Option(help: "Timed repetitions of each measurement (after one warm-up); the median is reported.") var reps: Int = 4
  @Option(help: "A Python with torch installed: also run PyTorch's reference script now (fp32, fp32 channels_last, bf16 channels_last) and print the ratios.")
  var pytorch: String?
  @Option(help: "Path of the PyTorch measurement script (default: python/oneshot_twin/bench.py, the project's PyTorch twin).")
  var pytorchScript: String = "python/oneshot_twin/bench.py"
  @Flag(help: "Skip the machine-peak measurement (about a second).") var noPeak = false
  @Flag(help: "Run each batch norm and the max pooling after it as two oneDNN primitives instead of the fused layer (the fusion's A/B in one sitting).")
  var unfused = false

  @Option(help: ArgumentHelp("Instead of a network, time one dnnl_sgemm of shape M,N,K (row-major C = A B), e.g. 64,11025,576.", valueName: "M,N,K"))
  var gemm: GemmShape?

  func validate() throws {
    guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    guard (pairs ?? 2) >= 1, images >= 1, reps >= 1 else { throw ValidationError("--pairs, --images and --reps must be at least 1") }
    if model.grouped, let pairs, pairs % 4 != 0 { throw ValidationError("--pairs must be a multiple of 4 for omniglot52 and speedrun (groups of 2 characters x 2 drawers)") }
  }

  func run() throws {
    ComputeThreads.set(threads)
    // PyTorch is checked before the Swift measurement, so a wrong --pytorch fails at once.
    let python = try pytorch.map(checkedPython)
    if let gemm {
      let seconds = GEMMBenchmark.time(m: gemm.m, n: gemm.n, k: gemm.k, reps: max(reps, 5))
      print(
        String(
          format: "dnnl_sgemm %d x %d x %d, %d thread(s): %.3f ms, %.0f GFLOP/s", gemm.m, gemm.n, gemm.k, threads, seconds * 1e3,
          2 * Double(gemm.m * gemm.n * gemm.k) / seconds / 1e9))
      return
    }
    var network = EmbeddingNetwork(config: model.config, seed: 0)
    network.precision = precision
    network.convolutionAlgorithm = algorithm
    network.fusesNormalizationPooling = !unfused
    let side = model.config.inputSize
    var rng = NormalSampler(seed: 1)
    let step = try trainingStep(network, rng: &rng)
    var optimizer = Optimizer(.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0), store: network.store)
    let forwardFlops = network.backboneFlopsPerImage
    print(
      "oneshot-bench bench: \(model.rawValue), \(threads) thread(s), kernels \(KernelISA.description), \(precision.rawValue) convolutions (\(algorithm.rawValue)), batch norm + pooling \(unfused ? "unfused" : "fused (\(NormalizationPooling.instructionSet) kernels)"), oneDNN \(oneDNNVersion); forward \(String(format: "%.4f", forwardFlops / 1e9)) GFLOP/image, training \(String(format: "%.4f", step.flopsPerItem / 1e9)) GFLOP/\(step.item)"
    )
    // The machine's peak, measured now on the same threads (the best of three: the first run of
    // a loop can meet a core still clocking up). Winograd does fewer multiplications than the
    // direct FLOP count it is credited with, so an fp32 figure with Winograd can pass 100%.
    let peak = measuredPeak()
    func share(_ gflops: Double) -> String { peak.map { String(format: "  %3.0f%% of peak", 100 * gflops / $0) } ?? "" }
    if algorithm == .auto || algorithm == .winograd {
      print("  convolutions (\(step.images)-image training step; forward / backward-data / backward-weights):")
      for choice in network.convolutionChoices(batch: step.images) {
        print("    \(choice.name.replacingOccurrences(of: "backbone.", with: "")): \(choice.algorithms.joined(separator: " / "))  [\(choice.detail)]")
      }
    }
    let trainTimes = time(reps: reps) {
      step.run(&network)
      optimizer.update(&network.store, learningRate: 1e-4)
    }
    let trainRate = Double(step.counted) / median(trainTimes)
    let embedInput = Tensor(shape: [images, 1, side, side], data: rng.normal(count: images * side * side, std: 1))
    let embedTimes = time(reps: reps) { _ = network.embed(embedInput) }
    let embedRate = Double(images) / median(embedTimes)
    // A step's input as training prepares it (each image's ink bytes to floats, distorted by
    // Koch's affine distortion with probability 0.5, as the speedrun recipes train), timed alone:
    // the most that preparing the next step's input beside this step's compute could save.
    let stock = (0..<(step.images * side * side)).map { _ in UInt8.random(in: 0...255) }
    let inputTimes = time(reps: reps) { _ = Trainer.input(Array(0..<step.images), step: 0, pixels: stock, size: side, augmentation: .koch, seed: 1) }
    let inputSeconds = median(inputTimes), stepSeconds = Double(step.counted) / trainRate
    let peakMemory = peakResidentBytes()
    let trainGflops = trainRate * step.flopsPerItem / 1e9, embedGflops = embedRate * forwardFlops / 1e9
    print(
      String(
        format: "  train  %7.2f %@s/s  (%@, Adam; min %.2f max %.2f)  %5.0f GFLOP/s", trainRate, step.item, step.detail,
        Double(step.counted) / trainTimes.max()!, Double(step.counted) / trainTimes.min()!, trainGflops) + share(trainGflops))
    print(
      String(
        format: "  embed  %7.2f images/s  (batch %d images; min %.2f max %.2f)  %5.0f GFLOP/s", embedRate, images,
        Double(images) / embedTimes.max()!, Double(images) / embedTimes.min()!, embedGflops) + share(embedGflops))
    print(
      String(
        format: "  input  %7.2f ms a step  (%d images distorted as training distorts them, %d thread(s); %.1f%% of a step with its input)", 1e3 * inputSeconds, step.images, ComputeThreads.loops,
        100 * inputSeconds / (inputSeconds + stepSeconds)))
    print(String(format: "  peak resident memory %.2f GB", Double(peakMemory) / 1e9))
    // A layer oneDNN could not build ran a slower Swift kernel: these figures are not oneDNN's.
    for reason in ReasonLog.oneDNNFallbacks.reasons { print("  note: \(reason)") }
    if let python { try comparePyTorch(python: python, batch: step.pytorchBatch, trainRate: trainRate, embedRate: embedRate, unit: step.item + "s/s") }
  }

  /// The machine's peak on these threads (printed), in the precision's unit; nil with --no-peak.
  func measuredPeak() -> Double? {
    guard !noPeak else { return nil }
    let fp32 = (0..<3).map { _ in cmachine_peak_gflops(Int32(threads), 0) }.max()!
    let bf16 = (0..<3).map { _ in cmachine_peak_gflops(Int32(threads), 1) }.max()!
    var line = String(format: "  peak   %7.0f GFLOP/s fp32 (%@)", fp32, String(cString: cmachine_peak_instructions(0)))
    if bf16 > 0 { line += String(format: ", %.0f GFLOP/s bf16 (%@)", bf16, String(cString: cmachine_peak_instructions(1))) }
    print(line)
    guard precision == .bf16 else { return fp32 }
    // oneDNN runs bf16 convolutions on AMX tiles where the CPU has them, several times the
    // vector units' rate; the loop above does not measure AMX, so a share of it would read 400%.
    if KernelISA.amx {
      print("  (bf16 runs on AMX tiles here, whose peak is not measured: no share of peak is printed)")
      return nil
    }
    return bf16 > 0 ? bf16 : fp32
  }

  /// One training step of the chosen network: its images, what its throughput counts, its FLOPs
  /// per counted item, and the step itself (loss and gradients; the optimizer is timed with it).
  struct TrainingStep {
    let images: Int
    /// Items counted a step (pairs, or images), and their name.
    let counted: Int
    let item: String
    let detail: String
    let flopsPerItem: Double
    /// The `--batch` of PyTorch's script for the same step.
    let pytorchBatch: Int
    let run: (inout EmbeddingNetwork) -> Void
  }

  /// The step of `model`: pairs (independent, or grouped as omniglot52's and speedrun's), or
  /// protonet's prototypical episode of `--pairs` classes x (1 support + 5 queries).
  func trainingStep(_ network: EmbeddingNetwork, rng: inout NormalSampler) throws -> TrainingStep {
    let side = network.config.inputSize
    let forwardFlops = network.backboneFlopsPerImage
    let firstConv = network.convolutions.first.map { $0.layer.flops(inputHeight: $0.side, inputWidth: $0.side) } ?? 0
    // Forward, backward-data (not for the first conv) and backward-weights of every image.
    let imageFlops = 3 * forwardFlops - firstConv
    if model.episodic {
      let ways = pairs ?? 60
      guard ways >= 2 else { throw ValidationError("--pairs is the episode's classes for protonet: at least 2") }
      let count = ways * 6
      let episode = Tensor(shape: [count, 1, side, side], data: rng.normal(count: count * side * side, std: 1))
      return TrainingStep(
        images: count, counted: count, item: "image", detail: "a \(ways)-way 1-shot 5-query episode of \(count) images", flopsPerItem: imageFlops, pytorchBatch: ways
      ) { _ = $0.prototypicalLossAndGradients(images: episode, ways: ways, shots: 1, queries: 5) }
    }
    let pairs = self.pairs ?? (model.grouped ? 128 : 32)
    // Grouped: 4 images, 4 pairs a group; independent: two images of its own a pair.
    let stepImages = model.grouped ? pairs : 2 * pairs
    let batchImages = Tensor(shape: [stepImages, 1, side, side], data: rng.normal(count: stepImages * side * side, std: 1))
    var pairIndices: [(Int, Int)] = []
    var labels: [Float] = []
    if model.grouped {
      // Group g: images 4g, 4g+1 (one character, two drawers), 4g+2, 4g+3 (another).
      for g in 0..<(pairs / 4) {
        let a = 4 * g
        pairIndices += [(a, a + 1), (a + 2, a + 3), (a, a + 2), (a + 1, a + 3)]
        labels += [1, 1, 0, 0]
      }
    } else {
      for i in 0..<pairs {
        pairIndices.append((i, pairs + i))
        labels.append(Float(i % 2))
      }
    }
    // Each pair's share of the images, and 3 x the head per pair.
    let flops = Double(stepImages) / Double(pairs) * imageFlops + 3 * network.headFlopsPerPair
    return TrainingStep(images: stepImages, counted: pairs, item: "pair", detail: "batch \(pairs) pairs on \(stepImages) images", flopsPerItem: flops, pytorchBatch: pairs) {
      _ = $0.lossAndGradients(images: batchImages, pairs: pairIndices, labels: labels)
    }
  }

  /// PyTorch's three CPU paths in this sitting, and our figures against the fastest.
  func comparePyTorch(python: String, batch: Int, trainRate: Double, embedRate: Double, unit: String) throws {
    let script = pytorchScript
    let net = ["--net", model == .vgg16 ? "vgg" : model.rawValue]
    let variants: [(String, [String])] = [("fp32", []), ("fp32 channels_last", ["--channels-last"]), ("bf16 channels_last", ["--bf16", "--channels-last"])]
    var bestTrain = (label: "", rate: 0.0), bestEmbed = (label: "", rate: 0.0)
    for (label, extra) in variants {
      let train = try runPyTorch(
        python: python, script: script,
        arguments: net + ["--mode", "train-batched", "--threads", String(threads), "--batch", String(batch), "--reps", String(reps)] + extra)
      let embed = try runPyTorch(
        python: python, script: script, arguments: net + ["--mode", "embed", "--threads", String(threads), "--batch", String(images), "--reps", String(reps)] + extra)
      print(String(format: "  PyTorch %@ (same sitting): train %.2f %@, embed %.2f images/s", label, train, unit, embed))
      if train > bestTrain.rate { bestTrain = (label, train) }
      if embed > bestEmbed.rate { bestEmbed = (label, embed) }
    }
    print(
      String(
        format: "  ratio oneshot-bench / PyTorch's best CPU path: train %.2fx (against %@), embed %.2fx (against %@)", trainRate / bestTrain.rate, bestTrain.label,
        embedRate / bestEmbed.rate, bestEmbed.label))
  }

  func time(reps: Int, _ body: () -> Void) -> [Double] {
    body()  // warm-up
    return (0..<reps).map { _ in
      let start = DispatchTime.now().uptimeNanoseconds
      body()
      return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }
  }

  func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
  }

  /// The Python of `--pytorch` (a path, or a name looked up on PATH), checked to import torch,
  /// and the measurement script checked to exist.
  func checkedPython(_ given: String) throws -> String {
    guard FileManager.default.fileExists(atPath: pytorchScript) else {
      throw UserFacingError("PyTorch script \(pytorchScript) not found; run from the repository's root or pass --pytorch-script PATH")
    }
    let path: String
    if given.contains("/") {
      path = given
    } else {
      let folders = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
      guard let found = folders.map({ "\($0)/\(given)" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw UserFacingError("--pytorch \(given): no such program on PATH; give the path of a Python with torch (e.g. VENV/bin/python)")
      }
      path = found
    }
    let probe = Process()
    probe.executableURL = URL(fileURLWithPath: path)
    probe.arguments = ["-c", "import torch"]
    probe.standardOutput = FileHandle.nullDevice
    probe.standardError = FileHandle.nullDevice
    do { try probe.run() } catch { throw UserFacingError("cannot run --pytorch \(given): \(error.localizedDescription); give the path of a Python with torch") }
    probe.waitUntilExit()
    guard probe.terminationStatus == 0 else {
      throw UserFacingError("--pytorch \(given) cannot import torch; install it (pip install -r python/requirements.txt) or give another Python")
    }
    return path
  }

  /// Runs the PyTorch script and returns the median it printed (pairs/s or images/s).
  func runPyTorch(python: String, script: String, arguments: [String]) throws -> Double {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: python)
    process.arguments = [script] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    do { try process.run() } catch { throw UserFacingError("cannot run \(python): \(error.localizedDescription); pass --pytorch with a Python that has torch") }
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    for line in output.split(separator: "\n") where !line.hasPrefix("#") {
      let words = line.split(separator: " ")
      if let unit = words.firstIndex(where: { $0 == "pairs/s" || $0 == "images/s" }), unit > 0, let value = Double(words[unit - 1]) { return value }
    }
    throw UserFacingError(
      "the PyTorch script printed no figure (exit \(process.terminationStatus)); run it by hand: \(python) \(script) \(arguments.joined(separator: " "))")
  }
}

/// Peak resident set size of this process (VmHWM), in bytes.
func peakResidentBytes() -> Int {
  guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
  for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
    let digits = line.split(separator: " ").compactMap { Int($0) }
    return (digits.first ?? 0) * 1024
  }
  return 0
}

extension ConvolutionAlgorithm: ExpressibleByArgument {}
extension ConvolutionPrecision: ExpressibleByArgument {}
