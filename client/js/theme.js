// theme.js — a classic script run in <head> before the page paints: applies the remembered
// colour theme (localStorage "sgp-theme", else the system's preference) as Bootstrap's
// data-bs-theme on <html>. The toggle button itself is wired in app.js.
(function () {
  var theme = null;
  try {
    theme = localStorage.getItem('sgp-theme');
  } catch (e) {
    // storage may be unavailable (privacy mode): follow the system
  }
  if (theme !== 'dark' && theme !== 'light') {
    theme = window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }
  document.documentElement.setAttribute('data-bs-theme', theme);
})();
