import ArgumentParser
import Episodes
import Experiments
import Foundation
import Reports

/// `oneshot-bench episodes`: prints sampled episodes' image identities, the same on every machine.
struct EpisodesCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "episodes", abstract: "Print the image identities of sampled N-way K-shot episodes.")

  @OptionGroup var data: DataOptions
  @Option(help: "Split: background, evaluation, background_small1, background_small2, validation (held-out background alphabets) or training.")
  var split: String = "evaluation"
  @Option(help: "Classes per episode (N).") var ways: Int = 20
  @Option(help: "Support images per class (K).") var shots: Int = 1
  @Option(help: "Query images per class (Q).") var queries: Int = 1
  @Option(help: "within: all classes from one alphabet (Lake's protocol); across: from any alphabet.")
  var alphabetMode: AlphabetMode = .within
  @Flag(help: "Take support and query images from disjoint drawers.") var disjointDrawers = false
  @Option(help: "Number of episodes.") var count: Int = 5
  @Option(help: "Episodes to skip before printing (episode i is the same whatever is skipped).") var start: Int = 0
  @Option(help: "Random seed.") var seed: UInt64 = 0
  @Option(help: "Output: json, or text (tab-separated with a header row; drawers for Omniglot, file names for --folder).") var format: EpisodeFormat = .json
  @Option(help: "Draw from a folder of your own images (ROOT/<group>/<class>/*.png) instead of an Omniglot split.") var folder: String?

  enum EpisodeFormat: String, ExpressibleByArgument, CaseIterable { case json, text }

  func validate() throws {
    // Bounded where they enter, as an experiment file's episode counts are (Limits.episodes).
    guard (1...Limits.episodes).contains(count) else { throw ValidationError("--count must be between 1 and \(Limits.episodes)") }
    guard (0...Limits.episodeStart).contains(start) else { throw ValidationError("--start must be between 0 and \(Limits.episodeStart)") }
  }

  func run() throws {
    let pool = try folder.map { ClassPool(split: try FolderDataset(root: URL(fileURLWithPath: $0)).load(size: 28).split) } ?? episodePool(split: split, dataset: data.dataset)
    let spec = EpisodeSpec(ways: ways, shots: shots, queries: queries, alphabetMode: alphabetMode, disjointDrawers: disjointDrawers)
    let sampler = try EpisodeSampler(pool: pool, spec: spec, seed: seed)
    let episodes = (start..<(start + count)).map(sampler.episode)
    switch format {
    case .json: print(episodesJSON(episodes, pool: pool, spec: spec, seed: seed))
    case .text: print(episodesText(episodes, pool: pool, byFileName: folder != nil))
    }
  }
}

extension AlphabetMode: ExpressibleByArgument {}

/// The class pool named on the command line.
func episodePool(split: String, dataset: OmniglotDataset, validationAlphabets: [String] = OmniglotAlphabets.defaultValidation) throws -> ClassPool {
  switch split {
  case "validation", "training":
    let background = try dataset.load(.background)
    let pools = try background.trainingAndValidation(validationAlphabets: validationAlphabets)
    return split == "validation" ? pools.validation : pools.training
  default:
    guard let name = OmniglotSplit(rawValue: split) else {
      throw UserFacingError("unknown split '\(split)'; use one of: \((OmniglotSplit.allCases.map(\.rawValue) + ["validation", "training"]).joined(separator: ", "))")
    }
    return ClassPool(split: try dataset.load(name))
  }
}

/// Episodes as JSON with a fixed key order and layout, so output is byte-identical everywhere.
func episodesJSON(_ episodes: [Episode], pool: ClassPool, spec: EpisodeSpec, seed: UInt64) -> String {
  func quoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      default:
        if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
      }
    }
    return out + "\""
  }
  func image(_ index: Int) -> String {
    let id = pool.split.identity(of: index)
    return "{\"alphabet\": \(quoted(id.alphabet)), \"character\": \(quoted(id.character)), \"drawer\": \(id.drawer)}"
  }
  var lines: [String] = []
  lines.append("{")
  lines.append("  \"pool\": \(quoted(pool.name)),")
  lines.append("  \"seed\": \(seed),")
  lines.append("  \"spec\": \(quoted(spec.canonical)),")
  lines.append("  \"episodes\": [")
  for (e, episode) in episodes.enumerated() {
    lines.append("    {")
    lines.append("      \"index\": \(episode.index),")
    lines.append("      \"alphabet\": \(episode.alphabet.map { quoted(pool.split.alphabets[$0]) } ?? "null"),")
    lines.append("      \"classes\": [")
    for c in episode.classes.indices {
      let character = pool.split.characters[episode.classes[c]]
      lines.append("        {")
      lines.append("          \"character\": \(quoted(pool.split.alphabets[character.alphabet] + "/" + character.name)),")
      lines.append("          \"support\": [\(episode.support[c].map(image).joined(separator: ", "))],")
      lines.append("          \"queries\": [\(episode.queries[c].map(image).joined(separator: ", "))]")
      lines.append("        }" + (c == episode.classes.count - 1 ? "" : ","))
    }
    lines.append("      ]")
    lines.append("    }" + (e == episodes.count - 1 ? "" : ","))
  }
  lines.append("  ]")
  lines.append("}")
  return lines.joined(separator: "\n")
}

/// Episodes as tab-separated lines, one per class, under a header row: the episode's index, the
/// class (`alphabet/character`, or `group/class` of a folder), and its support and query images,
/// comma-separated: Omniglot drawers (the `NN` of `<id>_NN.png`), or file names for a folder of
/// your own (whose position numbers would not match any name on disk).
func episodesText(_ episodes: [Episode], pool: ClassPool, byFileName: Bool) -> String {
  func image(_ index: Int) -> String {
    let record = pool.split.images[index]
    return byFileName ? String(record.path.split(separator: "/").last ?? Substring(record.path)) : String(record.drawer)
  }
  let kind = byFileName ? "files" : "drawers"
  var lines = ["episode\tclass\tsupport (\(kind))\tqueries (\(kind))"]
  for episode in episodes {
    for c in episode.classes.indices {
      let character = pool.split.characters[episode.classes[c]]
      let support = episode.support[c].map(image).joined(separator: ",")
      let queries = episode.queries[c].map(image).joined(separator: ",")
      lines.append("\(episode.index)\t\(visible(pool.split.alphabets[character.alphabet]))/\(visible(character.name))\t\(visible(support))\t\(visible(queries))")
    }
  }
  return lines.joined(separator: "\n")
}
