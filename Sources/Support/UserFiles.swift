import Foundation

/// Reading a file a user named (an experiment, a baseline, a checkpoint, an image): a regular
/// file of at most `maximumBytes`, checked before a byte is read, so that a path to a device
/// (`/dev/zero` never ends), a FIFO, a folder or a file of gigabytes is a one-line problem rather
/// than a hang or an exhausted memory.
public enum UserFile {
  /// What is wrong with the path, in words that follow its name (`PATH is a folder`), or nil
  /// when it is a regular file of at most `maximumBytes` (symbolic links are followed).
  public static func problem(_ path: String, maximumBytes: Int) -> String? {
    var info = stat()
    guard stat(path, &info) == 0 else {
      return errno == ENOENT || errno == ENOTDIR ? "does not exist" : "cannot be read (\(String(cString: strerror(errno))))"
    }
    switch info.st_mode & S_IFMT {
    case S_IFREG: break
    case S_IFDIR: return "is a folder, not a file"
    default: return "is not a regular file (a device, a pipe or a socket)"
    }
    if Int(info.st_size) > maximumBytes { return "is \(Int(info.st_size) >> 20) MB, more than the \(maximumBytes >> 20) MB such a file may have" }
    return nil
  }

  /// The file's bytes, or the problem (see `problem`) as the error's text.
  public static func read(_ path: String, maximumBytes: Int) throws -> Data {
    if let problem = problem(path, maximumBytes: maximumBytes) { throw UserFileError(path: path, problem: problem) }
    guard let data = FileManager.default.contents(atPath: path) else { throw UserFileError(path: path, problem: "cannot be read (check its permissions)") }
    guard data.count <= maximumBytes else { throw UserFileError(path: path, problem: "grew past \(maximumBytes >> 20) MB while it was read") }
    return data
  }
}

/// A file a user named that cannot be read as one: `PATH problem`.
public struct UserFileError: Error, CustomStringConvertible {
  public let path: String
  public let problem: String
  public var description: String { "\(path) \(problem)" }
}
