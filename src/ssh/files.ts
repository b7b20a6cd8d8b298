/** A file as a listing gives it: its name in the folder and its size. */
export interface FileEntry {
  name: string;
  size: number;
}

/** A file on this box to send. */
export interface LocalFile extends FileEntry {
  /** Absolute path on this box. */
  path: string;
}
