import Foundation

// `oneshot-bench sweep FILE --grid key.path=v1,v2 ... [--seeds 1-5]`: an experiment expanded
// into configurations, a pure function of the file and the grid, in one fixed order on every
// machine. Scheduling stays outside: a scheduler's job array (Slurm, Kubernetes Indexed Jobs)
// starts one task per index, and each task runs its share (`--task I --tasks N`).

/// One `--grid key.path=v1,v2,...`: the values a key takes.
package struct SweepAxis: Equatable {
  package let key: String
  package let values: [String]

  /// Parses `key.path=v1,v2`; commas inside brackets, braces or quotes belong to a value
  /// (`model.blocks=[[32],[64]],[[64],[128]]` is two values).
  package init(_ text: String) throws {
    guard let equals = text.firstIndex(of: "="), equals != text.startIndex else {
      throw UserFacingError("--grid \(text): write it as key.path=v1,v2,..., e.g. --grid training.optimizer.learningRate=0.001,0.003")
    }
    key = String(text[..<equals])
    var values: [String] = [], current = "", depth = 0, quoted = false, escaped = false
    for character in text[text.index(after: equals)...] {
      if quoted {
        current.append(character)
        if escaped { escaped = false } else if character == "\\" { escaped = true } else if character == "\"" { quoted = false }
        continue
      }
      switch character {
      case "\"": quoted = true
      case "[", "{": depth += 1
      case "]", "}": depth -= 1
      case "," where depth == 0:
        values.append(current)
        current = ""
        continue
      default: break
      }
      current.append(character)
    }
    values.append(current)
    guard depth == 0, !quoted, !values.contains(where: \.isEmpty) else { throw UserFacingError("--grid \(text): a value is empty or its brackets or quotes do not close") }
    guard Set(values).count == values.count else { throw UserFacingError("--grid \(text): a value is listed twice") }
    self.values = values
  }
}

/// Seeds written as `1-5`, `1,2,7` or `3`.
package func parseSeeds(_ text: String) throws -> [UInt64] {
  var seeds: [UInt64] = []
  for part in text.split(separator: ",", omittingEmptySubsequences: false) {
    let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
    if bounds.count == 2, let low = UInt64(bounds[0]), let high = UInt64(bounds[1]), low <= high, high - low < 10_000 {
      seeds += Array(low...high)
    } else if bounds.count == 1, let seed = UInt64(bounds[0]) {
      seeds.append(seed)
    } else {
      throw UserFacingError("--seeds \(text): write seeds as 1-5, 1,2,7 or 3")
    }
  }
  guard Set(seeds).count == seeds.count else { throw UserFacingError("--seeds \(text): a seed is listed twice") }
  return seeds
}

/// The configurations of a sweep.
package struct Sweep {
  /// One configuration: its position in the fixed order, the assignments that make it, and the
  /// resolved, checked configuration.
  package struct Item {
    package let index: Int
    package let overrides: [ConfigOverride]
    package let config: ExperimentConfig
  }

  package let file: String
  package let axes: [SweepAxis]
  package let seeds: [UInt64]?

  package init(file: String, axes: [SweepAxis], seeds: [UInt64]?) {
    self.file = file
    self.axes = axes
    self.seeds = seeds
  }

  /// At most this many configurations (a typo in a grid should not start ten thousand runs).
  package static let maximumConfigurations = 10_000

  /// Every configuration, in the documented order: the axes in the order given, the last one
  /// varying fastest, then the seeds innermost. Each is checked like a file (an unknown key, a
  /// wrong type or an impossible value stops the whole sweep before anything runs).
  package func items() throws -> [Item] {
    guard Set(axes.map(\.key)).count == axes.count else { throw UserFacingError("a key appears in two --grid options; give each key once") }
    if seeds != nil, axes.contains(where: { $0.key == "seed" }) { throw UserFacingError("seed is both a --grid key and --seeds; give one") }
    var combinations: [[ConfigOverride]] = [[]]
    for axis in axes {
      combinations = try combinations.flatMap { prefix in try axis.values.map { prefix + [try ConfigOverride("\(axis.key)=\($0)")] } }
      guard combinations.count <= Sweep.maximumConfigurations else { throw UserFacingError("the grid has more than \(Sweep.maximumConfigurations) configurations") }
    }
    if let seeds {
      combinations = try combinations.flatMap { prefix in try seeds.map { prefix + [try ConfigOverride("seed=\($0)")] } }
      guard combinations.count <= Sweep.maximumConfigurations else { throw UserFacingError("the grid has more than \(Sweep.maximumConfigurations) configurations") }
    }
    return try combinations.enumerated().map { index, overrides in
      Item(index: index, overrides: overrides, config: try ExperimentConfig.load(file, overrides: overrides))
    }
  }
}

/// The indices task `task` of `tasks` runs: every `tasks`-th configuration from `task`.
package func taskShare(count: Int, task: Int, tasks: Int) -> [Int] {
  Array(stride(from: task, to: count, by: tasks))
}

/// Which configurations a job-array task runs, from the command line and the scheduler's
/// environment; every mapping either assigns every configuration to some task of the array or
/// is refused with one line.
///
/// - `--task I --tasks T`: task I of T (0-based) runs configurations I, I + T, I + 2T, ...
/// - Slurm (`SLURM_ARRAY_TASK_ID`, with `_MIN`, `_MAX`, `_STEP`, `_COUNT`): an array that is a
///   range (`--array=0-3`, `1-4`, `0-10:2`) is a list of `COUNT` tasks, the task's position in it
///   (`(ID - MIN) / STEP`) its index, so 1-based arrays work; an array that is not a range
///   (`--array=1,3`, resubmitting failed indices) names configurations by index: task ID runs
///   configuration ID, as it did in the full array it came from (`--tasks` says how many tasks
///   that array had, when it had fewer than the configurations). A one-task array (`--array=3`)
///   is such a resubmission too.
/// - Kubernetes Indexed Jobs (`JOB_COMPLETION_INDEX`): index I of `--tasks` (default: one task
///   per configuration, so a Job with fewer completions needs `--tasks COMPLETIONS`).
package struct TaskAssignment: Equatable {
  /// The configurations this task runs.
  package let configurations: [Int]
  /// How the task was identified, for the note.
  package let description: String

  package init(configurations count: Int, task: Int?, tasks: Int?, environment: [String: String]) throws {
    func number(_ key: String) throws -> Int? {
      guard let text = environment[key] else { return nil }
      guard let value = Int(text), value >= 0 else { throw UserFacingError("\(key)=\(text) is not a task index or count; unset it or give --task N --tasks T") }
      return value
    }
    if let tasks, tasks < 1 { throw UserFacingError("--tasks \(tasks): give at least 1") }
    if let task {
      let total = tasks ?? count
      guard task < total else { throw UserFacingError("task \(task) is out of range: \(total) task\(total == 1 ? "" : "s") (0...\(total - 1)) share \(count) configurations") }
      self.init(task: task, of: total, count: count, description: "task \(task) of \(total)")
      return
    }
    if let id = try number("SLURM_ARRAY_TASK_ID") {
      // Without MIN and MAX (set by hand, an old Slurm), the array is 0...COUNT-1.
      let count0 = try number("SLURM_ARRAY_TASK_COUNT")
      let low = try number("SLURM_ARRAY_TASK_MIN") ?? (count0 == nil ? id : 0), high = try number("SLURM_ARRAY_TASK_MAX") ?? (count0.map { $0 - 1 } ?? id)
      let step = max(1, try number("SLURM_ARRAY_TASK_STEP") ?? 1)
      let listed = count0 ?? ((high - low) / step + 1)
      if listed >= 2 && listed == (high - low) / step + 1 && (id - low) % step == 0 {
        // A range: the task's position in it.
        let total = tasks ?? listed
        let position = (id - low) / step
        guard position < total else { throw UserFacingError("Slurm task \(id) is position \(position) of an array of \(listed), beyond --tasks \(total)") }
        self.init(task: position, of: total, count: count, description: "Slurm array task \(id) (position \(position) of \(total))")
      } else {
        // Not a range: indices of the array it was cut from.
        let total = tasks ?? count
        guard id < total else {
          throw UserFacingError(
            "Slurm task \(id) of an array that is not a range (\(listed) tasks, \(low)...\(high)) is read as a task index of the full array, but there \(total == 1 ? "is" : "are") only \(total) (0...\(total - 1)); give --tasks T of the array the indices come from")
        }
        self.init(task: id, of: total, count: count, description: "Slurm array task \(id) of \(total)")
      }
      return
    }
    if let index = try number("JOB_COMPLETION_INDEX") {
      let total = tasks ?? count
      guard index < total else { throw UserFacingError("JOB_COMPLETION_INDEX \(index) is out of range: \(total) tasks; set --tasks to the Job's completions") }
      self.init(task: index, of: total, count: count, description: "Indexed Job index \(index) of \(total)")
      return
    }
    self.init(task: 0, of: tasks ?? 1, count: count, description: tasks.map { "task 0 of \($0)" } ?? "every configuration")
  }

  private init(task: Int, of tasks: Int, count: Int, description: String) {
    configurations = taskShare(count: count, task: task, tasks: tasks)
    self.description = description
  }
}
