package android.content.res;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.RandomAccessFile;

/** Assets served from a folder (test constructor); the methods the snippet calls. */
public class AssetManager {
    private final File root;

    public AssetManager(File root) {
        this.root = root;
    }

    public AssetFileDescriptor openFd(String name) throws IOException {
        RandomAccessFile file = new RandomAccessFile(new File(root, name), "r");
        return new AssetFileDescriptor(file.getFD(), 0, file.length());
    }

    public InputStream open(String name) throws IOException {
        return new FileInputStream(new File(root, name));
    }

    /** The names in an asset folder (null if it is not one), as the real list() gives them. */
    public String[] list(String path) {
        return new File(root, path).list();
    }
}
