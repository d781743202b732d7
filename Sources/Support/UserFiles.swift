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

/// Writing a file a user named (`--output`, `--write-baseline`): never one of the command's
/// inputs, through a symbolic link to its target (the link stays), and only over a regular file:
/// a device, a FIFO or a folder at the path is refused, not replaced by a regular file.
public enum OutputFile {
  /// The path to write (a symbolic link resolved to its target), or the problem in words that
  /// follow the path's name (`PATH is one of the inputs`).
  public static func resolve(_ path: String, inputs: [String] = []) -> Result<String, UserFileError> {
    var target = path
    var link = stat()
    var hops = 0
    while lstat(target, &link) == 0, link.st_mode & S_IFMT == S_IFLNK {
      hops += 1
      guard hops <= 16, let next = try? FileManager.default.destinationOfSymbolicLink(atPath: target) else {
        return .failure(UserFileError(path: path, problem: "is a symbolic link that loops or cannot be read; give a path to a regular file"))
      }
      target = next.hasPrefix("/") ? next : (URL(fileURLWithPath: target).deletingLastPathComponent().appendingPathComponent(next).path)
    }
    var info = stat()
    if stat(target, &info) == 0 {
      guard info.st_mode & S_IFMT == S_IFREG else {
        let kind = info.st_mode & S_IFMT == S_IFDIR ? "a folder" : "not a regular file (a device, a pipe or a socket)"
        return .failure(UserFileError(path: path, problem: "is \(kind); nothing written: give a path to a regular file or a new one"))
      }
      for input in inputs {
        var other = stat()
        if stat(input, &other) == 0, other.st_dev == info.st_dev, other.st_ino == info.st_ino {
          return .failure(UserFileError(path: path, problem: "is one of the command's inputs (\(input)); nothing written: give another output path"))
        }
      }
    }
    return .success(target)
  }

  /// Writes `data` to the resolved path atomically (a temporary file renamed over it).
  public static func write(_ data: Data, to path: String, inputs: [String] = []) throws {
    let target = try resolve(path, inputs: inputs).get()
    do {
      try data.write(to: URL(fileURLWithPath: target), options: .atomic)
    } catch {
      throw OutputFileError(description: "cannot write \(path) (\(failureReason(error))); nothing written: choose a writable path (its folder must exist)")
    }
  }
}

/// An output that could not be written, in one line.
public struct OutputFileError: Error, CustomStringConvertible {
  public let description: String
}

/// Why a file operation failed: for a folder that could not be created, the part of its path
/// that is a file; otherwise the system's words when Foundation keeps them ("No such file or
/// directory"), else Foundation's own.
public func failureReason(_ error: Error, creatingFolder folder: String? = nil) -> String {
  if let folder {
    var url = URL(fileURLWithPath: folder).standardizedFileURL
    while url.path != "/" {
      var isDirectory: ObjCBool = false
      if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) {
        if !isDirectory.boolValue { return "\(url.path) is a file, not a folder" }
        break
      }
      url.deleteLastPathComponent()
    }
  }
  let ns = error as NSError
  return (ns.userInfo[NSUnderlyingErrorKey] as? NSError)?.localizedDescription ?? ns.localizedDescription
}
