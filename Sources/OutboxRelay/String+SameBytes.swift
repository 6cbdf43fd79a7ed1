extension String {
    /// Whether the two strings are the same UTF-8 bytes. Swift's `==` compares canonical
    /// equivalence instead (`"caf\u{E9}" == "cafe\u{301}"`); JSON keys and Redis names are bytes.
    /// Compares lengths first and then contiguous storage, which native strings always have.
    func hasSameBytes(as other: String) -> Bool {
        var this = self
        var other = other
        guard this.utf8.count == other.utf8.count else { return false }
        return this.withUTF8 { a in other.withUTF8 { b in a.elementsEqual(b) } }
    }
}
