package android.content.res;

import java.io.FileDescriptor;

public class AssetFileDescriptor {
    private final FileDescriptor fd;
    private final long start;
    private final long length;

    AssetFileDescriptor(FileDescriptor fd, long start, long length) {
        this.fd = fd;
        this.start = start;
        this.length = length;
    }

    public FileDescriptor getFileDescriptor() { return fd; }
    public long getStartOffset() { return start; }
    public long getDeclaredLength() { return length; }
}
