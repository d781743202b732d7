import Support
import Foundation

/// One of Lake's 20 one-shot runs: 20 training images (one per class, one drawer) and 20
/// test images (another drawer), with the answer key from `class_labels.txt`.
public struct LakeRun: Sendable {
  /// 1...20.
  public let number: Int
  /// The evaluation alphabet the run's characters come from.
  public let alphabet: String
  /// Indices into `LakeRuns.pixels` of `training/class01.png` ... `class20.png`, sorted by name.
  public let training: [Int]
  /// Indices into `LakeRuns.pixels` of `test/item01.png` ... `item20.png`, sorted by name.
  public let test: [Int]
  /// `answers[i]`: position in `training` of test item i's class.
  public let answers: [Int]
}

/// Lake et al.'s official one-shot benchmark, read from `all_runs.zip`: 20 runs x 20 trials,
/// 20-way 1-shot within one evaluation alphabet. Scoring: each test image is assigned to the
/// training image it is most similar to; run error = 100 - 5 x correct; the figure is the mean.
public struct LakeRuns: Sendable {
  /// The 20 runs in order.
  public let runs: [LakeRun]
  /// Image side (105).
  public let size: Int
  /// Ink intensities of the 800 images, `size * size` bytes each.
  public let pixels: [UInt8]
  /// Entry names of the images, same order as `pixels`.
  public let names: [String]

  /// Reads and checks `all_runs.zip`: every run has 20 training and 20 test images and a
  /// `class_labels.txt` that maps each test item to a distinct training class.
  public static func load(from dataset: OmniglotDataset, size: Int = 105, resampling: ImageResampling = .area) throws -> LakeRuns {
    let url = dataset.runsURL
    try dataset.requireFile(url)
    let archive = try openArchive(url)
    var pngs: [(path: String, bytes: [UInt8])] = []
    var labels: [String: String] = [:]
    for entry in archive where entry.type == .file {
      let bytes = try extractBounded(entry, from: archive, url: url)
      guard pngs.count <= maximumEntries else { throw DatasetError.corruptArchive(path: url.path, entry: nil, reason: "more than \(maximumEntries) entries") }
      if entry.path.hasSuffix("/class_labels.txt") {
        labels[String(entry.path.dropLast("/class_labels.txt".count))] = String(decoding: bytes, as: UTF8.self)
      } else if entry.path.hasSuffix(".png") {
        pngs.append((entry.path, bytes))
      } else {
        throw DatasetError.unexpectedFile(name: "\(url.lastPathComponent):\(entry.path)", reason: "all_runs.zip holds only runNN/{training,test}/*.png and class_labels.txt")
      }
    }
    pngs.sort { utf8Less($0.path, $1.path) }
    let index = Dictionary(uniqueKeysWithValues: pngs.enumerated().map { ($1.path, $0) })
    var runs: [LakeRun] = []
    for number in 1...20 {
      let folder = String(format: "run%02d", number)
      guard let text = labels[folder] else { throw DatasetError.malformedRuns("\(folder)/class_labels.txt is missing") }
      let training = pngs.indices.filter { pngs[$0].path.hasPrefix("\(folder)/training/") }
      let test = pngs.indices.filter { pngs[$0].path.hasPrefix("\(folder)/test/") }
      guard training.count == 20, test.count == 20 else {
        throw DatasetError.malformedRuns("\(folder) has \(training.count) training and \(test.count) test images; 20 of each expected")
      }
      var answers = [Int](repeating: -1, count: 20)
      let lines = text.split(whereSeparator: \.isNewline).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
      guard lines.count == 20 else { throw DatasetError.malformedRuns("\(folder)/class_labels.txt has \(lines.count) lines; 20 expected") }
      for line in lines {
        let parts = line.split(separator: " ").map(String.init)
        guard parts.count == 2, let testIndex = index[parts[0]], let trainIndex = index[parts[1]],
          let t = test.firstIndex(of: testIndex), let c = training.firstIndex(of: trainIndex)
        else { throw DatasetError.malformedRuns("\(folder)/class_labels.txt line '\(line)' names no test and training image of the run") }
        answers[t] = c
      }
      guard Set(answers).count == 20, !answers.contains(-1) else {
        throw DatasetError.malformedRuns("\(folder)/class_labels.txt does not map the 20 test items to 20 distinct classes")
      }
      runs.append(LakeRun(number: number, alphabet: OmniglotAlphabets.lakeRunAlphabets[(number - 1) / 2], training: training, test: test, answers: answers))
    }
    let pixels = try decodeInk(pngs.map { ("\(url.lastPathComponent):\($0.path)", $0.bytes) }, size: size, resampling: resampling)
    return LakeRuns(runs: runs, size: size, pixels: pixels, names: pngs.map(\.path))
  }

  /// The runs as scoring episodes over `pixels` (one support image per class, 20 queries).
  public var scoringEpisodes: [ScoringEpisode] {
    runs.map { run in
      ScoringEpisode(
        index: run.number - 1, group: run.alphabet, support: run.training.map { [$0] },
        queries: zip(run.test, run.answers).map { ScoringEpisode.Query(image: $0, label: $1) })
    }
  }
}
