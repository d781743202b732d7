import ArgumentParser
import Foundation
import Model

/// `oneshot-bench bench`: training and embedding throughput of a network on this machine,
/// optionally side by side with PyTorch's reference script in the same sitting.
struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Measure training pairs/s and embedding images/s (and, with --pytorch, PyTorch's on the same machine).")

  enum Net: String, ExpressibleByArgument, CaseIterable { case vgg16, koch }

  @Option(help: "Network: vgg16 (VGG16 at 105x105, head 4608-512-ReLU-1, as the PyTorch script) or koch.")
  var model: Net = .vgg16
  @Option(help: "Threads for oneDNN and the parallel loops.") var threads: Int = 2
  @Option(help: "Convolution arithmetic: fp32, or bf16 inputs with float accumulation.") var precision: ConvolutionPrecision = .fp32
  @Option(help: "Convolution implementation: direct (oneDNN's primitives) or im2col (im2col + sgemm).") var algorithm: ConvolutionAlgorithm = .direct
  @Option(help: "Pairs per training step.") var pairs: Int = 32
  @Option(help: "Images per embedding batch.") var images: Int = 64
  @Option(help: "Timed repetitions of each measurement (after one warm-up); the median is reported.") var reps: Int = 4
  @Option(help: "A Python with torch installed: also run ../shared/bench/torch_siamese.py now and print the ratios.")
  var pytorch: String?
  @Option(help: "Path of the PyTorch reference script.") var pytorchScript: String = "../shared/bench/torch_siamese.py"

  @Option(help: "Instead of a network, time one dnnl_sgemm of shape M,N,K (row-major C = A B).")
  var gemm: String?

  func validate() throws {
    guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    guard pairs >= 1, images >= 1, reps >= 1 else { throw ValidationError("--pairs, --images and --reps must be at least 1") }
  }

  func run() throws {
    ComputeThreads.set(threads)
    if let gemm {
      let dims = gemm.split(separator: ",").compactMap { Int($0) }
      guard dims.count == 3, dims.allSatisfy({ $0 > 0 }) else { throw UserFacingError("--gemm takes M,N,K, e.g. 64,11025,576") }
      let seconds = GEMMBenchmark.time(m: dims[0], n: dims[1], k: dims[2], reps: max(reps, 5))
      print(
        String(
          format: "dnnl_sgemm %d x %d x %d, %d thread(s): %.3f ms, %.0f GFLOP/s", dims[0], dims[1], dims[2], threads, seconds * 1e3,
          2 * Double(dims[0] * dims[1] * dims[2]) / seconds / 1e9))
      return
    }
    let config = model == .vgg16 ? ModelConfig(backbone: .vgg16, headActivation: .relu) : ModelConfig.koch
    var network = SiameseNetwork(config: config, seed: 0)
    network.precision = precision
    network.convolutionAlgorithm = algorithm
    let side = config.inputSize
    var rng = NormalSampler(seed: 1)
    let left = Tensor(shape: [pairs, 1, side, side], data: rng.normal(count: pairs * side * side, std: 1))
    let right = Tensor(shape: [pairs, 1, side, side], data: rng.normal(count: pairs * side * side, std: 1))
    let labels = (0..<pairs).map { Float($0 % 2) }
    var optimizer = Optimizer(.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0), store: network.store)
    let forwardFlops = network.backboneFlopsPerImage
    let firstConv: Double = {
      switch config.backbone {
      case .vgg16: return 2 * Double(config.vggBlocks[0][0] * 9 * side * side)
      case .koch: return 2 * Double(config.kochWidths.convs[0] * 100 * 96 * 96)
      }
    }()
    let trainFlopsPerPair = 2 * (3 * forwardFlops - firstConv) + 3 * network.headFlopsPerPair
    print(
      "oneshot-bench bench: \(model.rawValue), \(threads) thread(s), \(precision.rawValue) convolutions (\(algorithm.rawValue)), oneDNN \(oneDNNVersion); forward \(String(format: "%.3f", forwardFlops / 1e9)) GFLOP/image, training \(String(format: "%.2f", trainFlopsPerPair / 1e9)) GFLOP/pair"
    )
    let trainTimes = time(reps: reps) {
      _ = network.lossAndGradients(left: left, right: right, labels: labels)
      optimizer.update(&network.store, learningRate: 1e-4)
    }
    let trainRate = Double(pairs) / median(trainTimes)
    let embedInput = Tensor(shape: [images, 1, side, side], data: rng.normal(count: images * side * side, std: 1))
    let embedTimes = time(reps: reps) { _ = network.embed(embedInput) }
    let embedRate = Double(images) / median(embedTimes)
    let peak = peakResidentBytes()
    print(
      String(
        format: "  train  %7.2f pairs/s   (batch %d pairs, Adam; min %.2f max %.2f)  %5.0f GFLOP/s", trainRate, pairs, Double(pairs) / trainTimes.max()!,
        Double(pairs) / trainTimes.min()!, trainRate * trainFlopsPerPair / 1e9))
    print(
      String(
        format: "  embed  %7.2f images/s  (batch %d images; min %.2f max %.2f)  %5.0f GFLOP/s", embedRate, images, Double(images) / embedTimes.max()!,
        Double(images) / embedTimes.min()!, embedRate * forwardFlops / 1e9))
    print(String(format: "  peak resident memory %.2f GB", Double(peak) / 1e9))
    if let pytorch {
      let net = model == .vgg16 ? "vgg" : "koch"
      // PyTorch in fp32 (the issue's reference) and, for bf16 runs, its best CPU path too
      // (channels_last + bf16 autocast).
      var variants: [(String, [String])] = [("fp32", [])]
      if precision == .bf16 { variants.append(("bf16 channels_last", ["--bf16", "--channels-last"])) }
      for (label, extra) in variants {
        let torchTrain = try runPyTorch(
          python: pytorch,
          arguments: ["--net", net, "--channels", "1", "--mode", "train-batched", "--threads", String(threads), "--batch", String(pairs), "--reps", String(reps)] + extra)
        let torchEmbed = try runPyTorch(
          python: pytorch, arguments: ["--net", net, "--channels", "1", "--mode", "embed", "--threads", String(threads), "--batch", String(images), "--reps", String(reps)] + extra)
        print(String(format: "  PyTorch %@ (same sitting): train %.2f pairs/s, embed %.2f images/s", label, torchTrain, torchEmbed))
        print(String(format: "  ratio oneshot-bench / PyTorch %@: train %.2fx, embed %.2fx", label, trainRate / torchTrain, embedRate / torchEmbed))
      }
    }
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

  /// Runs the PyTorch script and returns the median it printed (pairs/s or images/s).
  func runPyTorch(python: String, arguments: [String]) throws -> Double {
    guard FileManager.default.fileExists(atPath: pytorchScript) else {
      throw UserFacingError("PyTorch script \(pytorchScript) not found; pass --pytorch-script PATH")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: python)
    process.arguments = [pytorchScript] + arguments
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
      "the PyTorch script printed no figure (exit \(process.terminationStatus)); run it by hand: \(python) \(pytorchScript) \(arguments.joined(separator: " "))")
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
