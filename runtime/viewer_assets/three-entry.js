// esbuild entry of the vendored three.js bundle (scripts/vendor_three.sh): only what viewer.js uses,
// exposed as one global so a classic <script> can use it from file:// (module scripts cannot load there).
export {
  Box3, Color, DirectionalLight, HemisphereLight, MeshLambertMaterial, PerspectiveCamera, Scene,
  SRGBColorSpace, Vector3, WebGLRenderer,
} from "three";
export { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
export { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";
