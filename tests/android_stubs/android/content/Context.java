package android.content;

import android.content.res.AssetManager;
import java.io.File;

public abstract class Context {
    public abstract AssetManager getAssets();

    /** The app's private files folder: -Dedgekit.stub.dir/files in the tests. */
    public File getFilesDir() {
        File dir = new File(System.getProperty("edgekit.stub.dir"), "files");
        dir.mkdirs();
        return dir;
    }
}
