import Foundation
import Reports
import ResultsStore

/// What a user does to a recorded run after the fact, as MLflow users expect: tag it, note on it,
/// delete it. The harness's own tags (how a run was made) are not a user's to change.
package enum RunAdmin {
  /// Sets a user's tag `key=value` on the run `idOrPrefix` names; returns the run's full id.
  @discardableResult
  package static func tag(_ idOrPrefix: String, key: String, value: String, store: ResultsStore) throws -> String {
    guard !key.isEmpty, !key.contains(where: { $0.isWhitespace || $0.isNewline }) else {
      throw UserFacingError("tag key '\(visible(key))' is empty or has spaces; give key=value, e.g. reviewed=yes")
    }
    guard !TagKey.isReserved(key) else {
      throw UserFacingError("tag '\(key)' is written by the harness (it records how the run was made) and cannot be set by hand; choose another key")
    }
    let id = try store.resolveRunID(idOrPrefix)
    try store.setTag(run: id, key: key, value: value)
    return id
  }

  /// Deletes the run `idOrPrefix` names from the store in one transaction (refused while a
  /// live process runs it); with `files`, also its folder of checkpoints, `…/<run id>/`, and
  /// only a folder named by the run's id, so an eval-only run's checkpoint (the shipped model,
  /// say) is never removed. Returns the full id and the folder removed, if any.
  /// A run that never wrote a best checkpoint (interrupted early) has no recorded path: its
  /// folder is looked for under `runsFolder` (`--runs`, default `runs`) by its id (issue #45,
  /// cause N: its `last.safetensors` and `config.json` were left behind).
  package static func delete(_ idOrPrefix: String, files: Bool, store: ResultsStore, runsFolder: String = "runs") throws -> (id: String, removed: String?) {
    let id = try store.resolveRunID(idOrPrefix)
    let checkpoint = try store.deleteRun(id, staleAfter: Lease.seconds, isAlive: RunRecording.isAlive)
    guard files else { return (id, nil) }
    let folder = checkpoint.map { URL(fileURLWithPath: $0).deletingLastPathComponent() } ?? URL(fileURLWithPath: runsFolder).appendingPathComponent(id)
    guard folder.lastPathComponent == id, FileManager.default.fileExists(atPath: folder.path) else { return (id, nil) }
    do {
      try FileManager.default.removeItem(at: folder)
    } catch {
      throw UserFacingError("run \(id) is deleted from the store, but its folder \(folder.path) could not be removed (\(error.localizedDescription)); remove it by hand")
    }
    return (id, folder.path)
  }
}
