import Episodes
import Foundation
import Model
import Support

// Fuzz entry points: each feeds untrusted bytes to one reader of the harness. A thrown error is
// the expected answer to bad input; a crash, a trap or a hang is a bug. The same function runs
// under libFuzzer (`scripts/fuzz TARGET SECONDS`, a build with -DFUZZING and
// -sanitize=fuzzer,address) and in `swift test`, which replays every committed corpus input and
// every input that once crashed (Tests/Fuzz/<target>/).

/// What a fuzz target reads.
package enum FuzzTarget: String, CaseIterable {
  /// An experiment file: JSON scan, strict decoding, every value's checks, canonical form.
  case experiment
  /// A baseline file for the CI gate.
  case baseline
  /// A checkpoint: safetensors header and offsets, model_config metadata, tensor shapes.
  case checkpoint
  /// A PNG image, decoded and resized as image folders are.
  case png
  /// A zip archive read as the Omniglot catalog reads images_evaluation.zip.
  case zip
  /// An argument vector (NUL-separated) parsed by every subcommand with its bounds; read by
  /// OneshotCLI's `fuzzInput`, which knows the commands.
  case cli
}

/// A scratch folder of this process for readers that take files.
package let fuzzScratch: URL = {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent("oneshot-fuzz-\(getpid())")
  try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}()

/// Feeds `bytes` to `target`'s reader; returns whether it accepted them.
@discardableResult
package func fuzz(_ target: FuzzTarget, _ bytes: [UInt8]) -> Bool {
  switch target {
  case .experiment:
    guard let config = try? ExperimentConfig.decode(Data(bytes), source: "fuzz") else { return false }
    // What a run does next with an accepted file: its canonical form, hash and parameters.
    return !config.hash.isEmpty && !flattenJSON(config.canonicalJSON).isEmpty
  case .baseline:
    return (try? Baseline.decode(Data(bytes), path: "fuzz")) != nil
  case .checkpoint:
    let url = fuzzScratch.appendingPathComponent("input.safetensors")
    guard (try? Data(bytes).write(to: url)) != nil else { return false }
    return (try? Checkpoint.readModel(url)) != nil
  case .png:
    guard bytes.count <= 1 << 20, let image = try? GrayImage.decodePNG(bytes, name: "fuzz") else { return false }
    return image.resized(width: 52, height: 52).pixels.count == 52 * 52
  case .zip:
    let url = fuzzScratch.appendingPathComponent("images_evaluation.zip")
    guard (try? Data(bytes).write(to: url)) != nil else { return false }
    return (try? OmniglotDataset(root: fuzzScratch).load(.evaluation, size: 28)) != nil
  case .cli:
    return false  // the commands live above this module: OneshotCLI's fuzzInput reads it
  }
}
