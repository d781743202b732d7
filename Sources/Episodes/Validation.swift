/// The documented split of Omniglot's background alphabets into training and validation.
public enum OmniglotAlphabets {
  /// Background alphabets held out for model selection and early stopping (157 characters,
  /// each with at least 20, so 20-way within-alphabet validation episodes are possible).
  /// Training uses the other 25 background alphabets (807 characters). The evaluation
  /// alphabets are the test set and are never used for training or model selection.
  public static let defaultValidation = ["Armenian", "Bengali", "Early_Aramaic", "Futurama", "Hebrew"]

  /// The alphabets of Lake's 20 runs, two runs each, in run order (run01-02 Atlantean, ...).
  public static let lakeRunAlphabets = [
    "Atlantean", "Ge_ez", "Glagolitic", "Gurmukhi", "Kannada", "Malayalam", "Manipuri",
    "Old_Church_Slavonic_(Cyrillic)", "Tengwar", "Tibetan",
  ]
}

extension ImageSplit {
  /// The training and validation pools of a background split: validation = the named
  /// alphabets, training = every other alphabet. The two never share a class.
  public func trainingAndValidation(validationAlphabets: [String]) throws -> (training: ClassPool, validation: ClassPool) {
    let validation = try ClassPool(split: self, alphabets: validationAlphabets, include: true, name: "\(name)/validation")
    let training = try ClassPool(split: self, alphabets: validationAlphabets, include: false, name: "\(name)/training")
    return (training, validation)
  }
}
