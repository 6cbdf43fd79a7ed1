/// TLS settings for `rediss://`: the CA to trust (nil: the system's trust store) and an optional
/// client certificate and key, all PEM files.
public struct RedisTLS: Sendable, Equatable {
    public var caFile: String?
    public var certificateFile: String?
    public var keyFile: String?

    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }
}
